"""Which hosts (and which local slots) a job runs on, before planning.

``--include`` and ``--exclude`` take DeepSpeed's syntax: hosts separated by
``@``, each optionally followed by ``:`` and a comma-separated list of local
slot indices (GPU ids)::

    --include 'worker-0@worker-1:0,2'    all of worker-0, slots 0 and 2 of worker-1
    --exclude 'worker-1:0'               every host, less slot 0 of worker-1

Host names may use ranges (``gpu[01-04]``). Picking slots sets that node's
``CUDA_VISIBLE_DEVICES`` to the chosen indices and its slot count to how many
there are. As in DeepSpeed's ``parse_resource_filter``:

- a host named more than once gets the union of what each names
  (``worker-0:1@worker-0:0,1`` is slots 0 and 1), in either flag, and a slot
  named twice counts once; a bare name is every slot, so its union with any
  slots is the whole host;
- a host whose every slot is excluded is left out, as if named bare;
- naming a host that is not in the cluster, or a slot that the host does not
  have, is an error in either flag, as is giving both flags.

sshrun adds: a host without a slot count takes any ``--include`` slots (its
GPUs are not known on the head) but cannot have slots excluded, and a filter
that leaves no host is an error.

With no hostfile, host list or config, ``SLURM_JOB_NODELIST`` (inside an
allocation) gives the hosts: Slurm's hostlist expressions are expanded and
``SLURM_NTASKS_PER_NODE``, when set, gives the slots.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from sshrun.errors import ConfigError
from sshrun.hostfile import parse_host_list
from sshrun.hostlist import MAX_HOSTS, HostlistError, expand_hostlist, hostlist_size
from sshrun.hostspec import MAX_SLOTS, HostSpec
from sshrun.values import BadValue, clip, whole_number

Slots = tuple[int, ...] | None  # chosen slot indices, sorted; None for the whole host
Filter = dict[str, Slots]  # host -> its chosen slots


def parse_filter(value: str, flag: str) -> Filter:
    """``--include``/``--exclude``'s value: each host named, with its slot indices
    (sorted, each once) or None for the whole host."""
    chosen: Filter = {}
    shown = clip(value)
    total = 0
    for part in value.split("@"):
        part = part.strip()
        if not part:
            raise ConfigError(f"{flag} {shown}: empty host between '@' separators")
        name, sep, slots_text = part.partition(":")
        try:
            # Counted before anything is built: many short ranges would
            # otherwise expand to millions of names from a short flag.
            total += hostlist_size(name)
            if total > MAX_HOSTS:
                raise ConfigError(
                    f"{flag} {shown}: names more than the limit of {MAX_HOSTS} hosts"
                )
            names = expand_hostlist(name)
        except HostlistError as exc:
            raise ConfigError(f"{flag} {shown}: {exc.message}") from None
        slots: Slots = None
        if sep:
            try:
                if not re.fullmatch(r"[0-9]+(,[0-9]+)*", slots_text):
                    raise BadValue("slot indices")
                slots = tuple(sorted({whole_number(s, 0, MAX_SLOTS - 1)
                                      for s in slots_text.split(",")}))
            except BadValue as exc:
                raise ConfigError(
                    f"{flag} {shown}: expected HOST:SLOT[,SLOT...] with slot indices "
                    f"0-{MAX_SLOTS - 1}, got {clip(part)}"
                    + ("" if exc.kind != "high" else ": a slot index is too large")
                ) from None
        for host in names:
            chosen[host] = _union(chosen[host], slots) if host in chosen else slots
    return chosen


def _union(first: Slots, second: Slots) -> Slots:
    """What a host named twice stands for: a bare name (None) is every slot."""
    if first is None or second is None:
        return None
    return tuple(sorted({*first, *second}))


def _check_slots(host: HostSpec, slots: tuple[int, ...], flag: str) -> None:
    """Every slot named (sorted) must exist on a host whose slot count is known."""
    if host.slots is not None and slots[-1] >= host.slots:
        raise ConfigError(
            f"{flag}: {host.host} has {host.slots} slots (0-{host.slots - 1}); "
            f"slot {slots[-1]} does not exist"
        )


def _with_slots(host: HostSpec, slots: tuple[int, ...]) -> HostSpec:
    env = tuple((k, v) for k, v in host.env if k != "CUDA_VISIBLE_DEVICES")
    devices = ",".join(str(s) for s in slots)
    return dataclasses.replace(
        host, slots=len(slots), env=(*env, ("CUDA_VISIBLE_DEVICES", devices))
    )


def apply_filters(
    hosts: Sequence[HostSpec], include: str | None = None, exclude: str | None = None
) -> tuple[HostSpec, ...]:
    if include is not None and exclude is not None:
        raise ConfigError("--include and --exclude cannot be used together")
    if include is None and exclude is None:
        return tuple(hosts)
    flag = "--include" if include is not None else "--exclude"
    chosen = parse_filter(include if include is not None else exclude or "", flag)
    known = {h.host for h in hosts}
    for name in chosen:
        if name not in known:
            raise ConfigError(f"{flag}: {name} is not one of the cluster's hosts")
    out: list[HostSpec] = []
    for host in hosts:
        if host.host not in chosen:
            if exclude is not None:
                out.append(host)
            continue
        slots = chosen[host.host]
        if slots is None:
            if include is not None:
                out.append(host)
            continue
        _check_slots(host, slots, flag)
        if include is not None:
            out.append(_with_slots(host, slots))
            continue
        if host.slots is None:
            raise ConfigError(
                f"{flag}: {host.host} has no slot count, so its slots cannot be excluded"
            )
        keep = tuple(s for s in range(host.slots) if s not in slots)
        # Every slot excluded: the host goes, as DeepSpeed drops an emptied host.
        if keep:
            out.append(_with_slots(host, keep))
    if not out:
        raise ConfigError(f"{flag}: no host is left to run on")
    return tuple(out)


def slurm_hosts(environ: Mapping[str, str]) -> tuple[HostSpec, ...] | None:
    """The hosts of the Slurm allocation this runs in, or None outside one."""
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        return None
    hosts = parse_host_list(nodelist, source="SLURM_JOB_NODELIST")
    per_node = environ.get("SLURM_NTASKS_PER_NODE", "")
    if re.fullmatch(r"[0-9]+", per_node):
        try:
            slots = whole_number(per_node, 1, MAX_SLOTS)
        except BadValue as exc:
            raise ConfigError(
                f"SLURM_NTASKS_PER_NODE: expected {exc.reason} (slots per node), "
                f"got {clip(per_node)}"
            ) from None
        hosts = [dataclasses.replace(h, slots=slots) for h in hosts]
    return tuple(dataclasses.replace(h, where="SLURM_JOB_NODELIST") for h in hosts)
