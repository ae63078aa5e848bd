"""Live processes: the TCP sockets a running process holds, read (``status``)
and changed (``apply``) through ``pidfd_getfd(2)``."""
