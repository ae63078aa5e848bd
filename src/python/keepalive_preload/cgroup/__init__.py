"""The cgroup mode: an eBPF sock_ops program that sets the options on every
TCP connection of a cgroup v2."""
