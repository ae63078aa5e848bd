"""Presets for the common middlebox idle timeouts (``--preset aws-nlb``).

A NAT, firewall or load balancer forgets a connection after ``timeout``
seconds without a packet. On a live, idle connection the kernel sends a
probe ``idle`` seconds after the last packet and, once a probe is answered,
the next one ``max(idle, interval)`` seconds later; when a probe is lost the
next one follows ``interval`` seconds after it. So both must be below the
timeout, and ``idle + interval`` too (one lost probe must not cost the
connection). Every preset keeps ``idle + interval`` at or below three
quarters of the timeout, with ``interval`` well below ``idle``. ``count``
unanswered probes declare the peer dead after ``idle + interval * count``
seconds, which is also the derived TCP_USER_TIMEOUT.

The one table of presets: the command line, the README's table (checked by a
test) and the man page agree with it.
"""

from __future__ import annotations


class Preset:
    """One middlebox: its idle timeout, the values for it, and the source."""

    __slots__ = ("count", "idle", "interval", "name", "source", "timeout", "title")

    def __init__(self, name: str, title: str, timeout: int, idle: int, interval: int,
                 count: int, source: str) -> None:
        self.name = name
        self.title = title
        #: The middlebox's idle timeout, in seconds.
        self.timeout = timeout
        self.idle = idle
        self.interval = interval
        self.count = count
        #: Where the timeout is documented: a page title and its URL.
        self.source = source

    def values(self) -> dict[str, int]:
        """The options this preset sets, by option name."""
        return {"idle": self.idle, "interval": self.interval, "count": self.count}


PRESETS = (
    Preset("aws-nlb", "AWS Network Load Balancer (TCP default, 60-6000 s configurable; "
           "TLS fixed)",
           350, 240, 20, 5,
           "AWS, Elastic Load Balancing, \"Update the TCP idle timeout for your Network "
           "Load Balancer listener\": https://docs.aws.amazon.com/elasticloadbalancing/latest/"
           "network/update-idle-timeout.html"),
    Preset("aws-gwlb", "AWS Gateway Load Balancer (TCP default, 60-6000 s configurable)",
           350, 240, 20, 5,
           "AWS, Elastic Load Balancing, \"Update the TCP idle timeout for your Gateway "
           "Load Balancer listener\": https://docs.aws.amazon.com/elasticloadbalancing/latest/"
           "gateway/update-idle-timeout.html"),
    Preset("aws-nat", "AWS NAT gateway", 350, 240, 20, 5,
           "AWS, Amazon VPC User Guide, \"Troubleshoot NAT gateways\" (connection "
           "timeout): https://docs.aws.amazon.com/vpc/latest/userguide/"
           "nat-gateway-troubleshooting.html"),
    Preset("aws-conntrack", "AWS EC2 connection tracking (Nitro v6 default for established TCP)",
           350, 240, 20, 5,
           "AWS, Amazon EC2 User Guide, \"Connection tracking timeouts\" "
           "(tcpEstablishedTimeout): https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/"
           "security-group-connection-tracking.html"),
    Preset("azure-lb", "Azure Load Balancer (default rule idle timeout, 4 min)", 240, 150, 20, 5,
           "Microsoft Learn, \"Configure TCP reset and idle timeout for Azure Load Balancer\": "
           "https://learn.microsoft.com/azure/load-balancer/load-balancer-tcp-idle-timeout"),
    Preset("azure-nat", "Azure NAT Gateway (default TCP idle timeout, 4 min)", 240, 150, 20, 5,
           "Microsoft Learn, \"Azure NAT Gateway resource\" (TCP idle timeout): "
           "https://learn.microsoft.com/azure/nat-gateway/nat-gateway-resource"),
    Preset("gcp-nat", "Google Cloud NAT (TCP established idle timeout)", 1200, 800, 60, 5,
           "Google Cloud, Cloud NAT, \"Tune NAT configuration\" (tcpEstablishedIdleTimeoutSec, "
           "default 1200 s): https://cloud.google.com/nat/docs/tune-nat-configuration"),
    Preset("gcp-firewall", "Google Cloud VPC firewall connection tracking (10 min)",
           600, 400, 30, 5,
           "Google Cloud, Cloud NGFW, \"VPC firewall rules\" (Specifications: connection "
           "tracking, idle established TCP connections tracked for 10 minutes): "
           "https://cloud.google.com/firewall/docs/firewalls"),
    Preset("ipvs", "Linux IPVS (kube-proxy IPVS mode), established TCP", 900, 600, 30, 5,
           "Linux net/netfilter/ipvs/ip_vs_proto_tcp.c (IP_VS_TCP_S_ESTABLISHED: "
           "15*60*HZ); ipvsadm(8) --set; kube-proxy --ipvs-tcp-timeout: "
           "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/"),
    Preset("docker-overlay", "Docker overlay network, service VIP (IPVS, about 15 min)",
           900, 600, 30, 5,
           "moby/moby issue 31208, \"Idle connections over overlay network ends up in "
           "a broken state after 15 minutes\": https://github.com/moby/moby/issues/31208"),
    Preset("oracle-nlb", "Oracle Cloud Network Load Balancer (TCP listener)", 360, 240, 20, 5,
           "Oracle Cloud Infrastructure, \"Changing a Listener's Idle Timeout\" (network load "
           "balancer, TCP 360 s): https://docs.oracle.com/en-us/iaas/Content/"
           "NetworkLoadBalancer/NetworkLoadBalancers/configure-idle-timeout.htm"),
)

#: Former names, still accepted by ``--preset`` (not listed).
ALIASES = {"gce-firewall": "gcp-firewall"}

BY_NAME = {preset.name: preset for preset in PRESETS}


def presets_table() -> str:
    """The presets as the ``presets`` subcommand prints them."""
    head = ("PRESET", "TIMEOUT", "IDLE", "INTERVAL", "COUNT", "DEAD AFTER", "MIDDLEBOX")
    rows = [head] + [(p.name, f"{p.timeout}s", f"{p.idle}s", f"{p.interval}s", str(p.count),
                      f"{p.idle + p.interval * p.count}s", p.title) for p in PRESETS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
             for row in rows]
    sources = "".join(f"  {p.name}: {p.source}\n" for p in PRESETS)
    return "\n".join(lines) + (
        "\n\nDEAD AFTER: idle + interval * count, also the derived TCP_USER_TIMEOUT; "
        "explicit --idle/--interval/--count/--user-timeout win over the preset.\n"
        f"\nSources of the timeouts:\n{sources}")


def preset(name: str) -> Preset:
    """The preset called ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return BY_NAME[ALIASES.get(name, name)]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of: "
                         f"{', '.join(BY_NAME)}") from None
