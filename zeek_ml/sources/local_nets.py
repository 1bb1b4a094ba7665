"""The site's local networks, as Zeek's ``Site::local_nets`` knows them: which addresses are local.

Zeek writes ``local_orig``/``local_resp`` into conn.log from it; a source that lacks those
(Suricata eve flows) fills them from :class:`LocalNets`, and :mod:`zeek_ml.notices.site` turns
them into a direction. With no ``--local-nets`` the private address space is local
(:data:`PRIVATE_NETS`, as ``Site::private_address_space`` would be).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

PRIVATE_NETS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
)
"""Local when the log has no ``local_orig``/``local_resp`` and no ``--local-nets`` is given."""


@dataclass(frozen=True)
class LocalNets:
    """The site's local networks (``Site::local_nets``): a list of CIDR strings."""

    nets: tuple[str, ...] = PRIVATE_NETS

    @classmethod
    def parse(cls, text: str | Iterable[str] | None) -> LocalNets:
        """From ``"10.0.0.0/8,192.168.1.0/24"`` or a list; None gives the private address space."""
        if text is None:
            return cls()
        items = text.split(",") if isinstance(text, str) else list(text)
        nets = []
        for item in items:
            item = item.strip()
            if item:
                nets.append(str(ipaddress.ip_network(item, strict=False)))  # ValueError on a bad net
        return cls(tuple(nets)) if nets else cls()

    def _networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.nets]

    def classify(self, addrs: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(is_local, is_group) bool arrays: inside a local net; multicast or broadcast.

        Parses each distinct address once (``pd.factorize``, which Arrow-backed text does without a
        Python string per row), and remembers the answers for the next batches (:data:`CACHE_SIZE`).
        """
        codes, uniques = pd.factorize(addrs, use_na_sentinel=True)
        cache = _CACHE.setdefault(self.nets, {})
        if len(cache) > CACHE_SIZE:
            cache.clear()
        nets: tuple[list, set] | None = None
        local_u = np.zeros(len(uniques) + 1, dtype=bool)  # last slot: missing address
        group_u = np.zeros(len(uniques) + 1, dtype=bool)
        for i, text in enumerate(uniques):
            text = str(text)
            known = cache.get(text)
            if known is None:
                if nets is None:
                    networks = self._networks()
                    nets = networks, {n.broadcast_address for n in networks if n.version == 4 and n.prefixlen < 31}
                known = cache[text] = _classify(text, *nets)
            local_u[i], group_u[i] = known
        codes = np.where(codes < 0, len(uniques), codes)
        return local_u[codes], group_u[codes]


CACHE_SIZE = 1 << 16
"""Distinct addresses whose answers :meth:`LocalNets.classify` keeps (then it starts afresh)."""
_CACHE: dict[tuple[str, ...], dict[str, tuple[bool, bool]]] = {}


def _classify(text: str, nets: list, broadcasts: set) -> tuple[bool, bool]:
    """(is_local, is_group) of one address's text; (False, False) for text that is no address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False, False
    local = any(ip in n for n in nets if n.version == ip.version)
    return local, ip.is_multicast or ip in broadcasts or str(ip) == "255.255.255.255"
