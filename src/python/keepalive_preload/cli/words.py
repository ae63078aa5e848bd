"""The command line's words that every part of it shares, argparse-free (the
plain ``run`` and ``path`` of the package's ``console()`` use them before any
parser is built): the program name, the subcommands and the exit statuses."""

PROG = "keepalive-preload"

#: The subcommands, in the order --help lists them: name -> one-line help.
#: Each is the module of that name in the cli package (see ``Subcommand``:
#: ``add_parser(subparsers)`` and ``run(args, parser) -> int``).
COMMANDS = {
    "run": "run COMMAND with the library preloaded",
    "env": "print the environment for a shell, systemd or docker",
    "presets": "list the presets for --preset",
    "path": "print the path of a library",
    "status": "show the TCP sockets of running processes and their keepalive",
    "apply": "set the options on the TCP sockets of running processes",
    "cgroup": "keepalive for every process of a cgroup (eBPF; static binaries too)",
    "metrics": "the host's TCP connections and their keepalive, for Prometheus",
    "config": "check a configuration file with the libraries' own parser",
}


#: The variant of run, env, apply and cgroup attach when none is named.
DEFAULT_VARIANT = "socket"

# Exit statuses, in one place.
#: Success.
OK = 0
#: The command failed (a process that cannot be read, a socket not changed, ...).
FAILURE = 1
#: Bad arguments: one line on stderr.
USAGE = 2
#: ``status --all --check``: nothing readable lacks keepalive, but some processes
#: could not be read (the answer is unknown; Nagios's UNKNOWN).
UNKNOWN = 3
#: ``run``: the command was found but cannot be executed (like a shell).
CANNOT_EXECUTE = 126
#: ``run``: the command was not found (like a shell).
NOT_FOUND = 127
