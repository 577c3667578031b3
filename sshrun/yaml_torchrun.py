"""The YAML cluster config's ``torchrun:`` section: torchrun's options, '_' or '-'.

Every option of ``sshrun.torchrun_options``' table that a file can hold is a
key here, under torchrun's name in either spelling (``nproc_per_node`` or
``nproc-per-node``), and its value is checked by the table's own parser, the
one the command line and ``PET_*`` use; this module only words the error
with the key's ``file:line:column``. A key for an option that sshrun refuses
(``node_rank``, ``local_addr``) fails with the table's reason; ``log_dir`` is
the file's top-level key, not this section's.

YAML shapes: numbers may be written as numbers; switches (``standalone``,
``module``, ...) are YAML booleans; ``rdzv_conf`` a mapping or a
``KEY=VALUE,...`` string; the duplicate filters and ``local_ranks_filter``
a list or a string. The result is the section as text, one
``(dash name, value)`` pair per key in :data:`TORCHRUN_KEYS` order, each
value as torchrun's command line would take it;
:func:`typed` gives them parsed, by the same table.
"""

from __future__ import annotations

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sshrun import values
from sshrun.hostfile import MAX_HOSTS, MAX_SLOTS
from sshrun.output_filters import format_filters
from sshrun.torchrun_options import BY_DEST, OPTIONS, RDZV_BACKENDS, TorchrunOption
from sshrun.yamlread import BOOL, YamlReader, clip, describe, suggest

# The keys of the first releases keep their order in the result; the others
# follow in torchrun's.
_FIRST = ("nproc_per_node", "nnodes", "max_restarts", "rdzv_backend", "rdzv_endpoint",
          "rdzv_id", "rdzv_conf")
# Not keys of this section, each with the reason why.
NOT_HERE: dict[str, str] = {
    "log_dir": "give log_dir at the top level of the file (sshrun's log directory on the "
               "head; torchrun's own is not used)",
    **{o.dest: o.does for o in OPTIONS if o.handling == "refused"},
}
TORCHRUN_KEYS: tuple[str, ...] = (*_FIRST, *(o.dest for o in OPTIONS
                                             if o.dest not in _FIRST and o.dest not in NOT_HERE))
NPROC_WORDS = values.NPROC_WORDS
MAX_RESTARTS = values.MAX_RESTARTS


def read_torchrun(reader: YamlReader, node: Node | None) -> tuple[tuple[str, str], ...]:
    """The section's keys and values, checked (a LocationError for anything wrong)."""
    if node is None or reader.is_null(node):
        return ()
    given: dict[str, tuple[Node, str, Node]] = {}
    for name, (key, value) in reader.pairs(node, "torchrun").items():
        canonical = name.replace("-", "_")
        if canonical in NOT_HERE:
            reader.fail(key, f"{name} in torchrun: {NOT_HERE[canonical]}")
        if canonical not in TORCHRUN_KEYS:
            valid: tuple[str, ...] = TORCHRUN_KEYS
            if "-" in name:
                valid = tuple(k.replace("_", "-") for k in TORCHRUN_KEYS)
            reader.fail(key, f"unknown key {name!r} in torchrun; {suggest(name, valid)}")
        first = given.get(canonical)
        if first is not None:
            reader.fail(
                key,
                f"{canonical} given twice in torchrun: {name!r} here, {first[1]!r} at "
                f"{reader.ref(first[0])}",
            )
        given[canonical] = (key, name, value)
    result: list[tuple[str, str]] = []
    for canonical in TORCHRUN_KEYS:
        if canonical in given:
            _, name, value = given[canonical]
            result.append((canonical.replace("_", "-"), _value(reader, canonical, name, value)))
    return tuple(result)


def typed(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The section's values parsed by the table (dest -> value): what the resolver uses."""
    return {name.replace("-", "_"): BY_DEST[name.replace("-", "_")].value(text)
            for name, text in pairs}


def _value(reader: YamlReader, canonical: str, name: str, node: Node) -> str:
    option = BY_DEST[canonical]
    if canonical == "nproc_per_node":
        text = reader.scalar(node, name, "a positive integer or one of auto, cpu, gpu, xpu")
        if text in NPROC_WORDS:
            return text
        if not (text.isascii() and text.isdigit()):
            reader.fail(
                node,
                f"expected a positive integer or one of {', '.join(NPROC_WORDS)} for {name}, "
                f"got {describe(node)}",
            )
        return str(reader.integer(node, name, 1, MAX_SLOTS))
    if canonical == "nnodes":
        return _nnodes(reader, node, name)
    if canonical == "max_restarts":
        return str(reader.integer(node, name, 0, MAX_RESTARTS))
    if canonical == "rdzv_backend":
        return reader.choice(node, name, RDZV_BACKENDS)
    if canonical == "rdzv_endpoint":
        text = reader.string(node, name)
        try:
            values.endpoint(text)
        except values.BadValue:
            reader.fail(node, f"expected HOST or HOST:PORT for {name}, got {clip(text)}")
        return text
    if canonical == "rdzv_id":
        return reader.word(node, name)
    if canonical == "rdzv_conf":
        return _rdzv_conf(reader, node, name)
    if option.switch:
        reader.check_tag(node)
        if not (isinstance(node, ScalarNode) and node.tag == BOOL):
            reader.fail(node, f"expected true or false for {name}, got {describe(node)}")
        # YAML 1.1's booleans, as PyYAML's SafeLoader reads them (yes/no, on/off too).
        return "true" if str(node.value).lower() in ("true", "yes", "on") else "false"
    if option.choices is not None:
        return reader.choice(node, name, option.choices)
    if canonical in ("duplicate_stdout_filters", "duplicate_stderr_filters",
                     "local_ranks_filter") and isinstance(node, SequenceNode):
        return _list(reader, node, name, canonical)
    return _parsed(reader, option, node, name, reader.string(node, name))


def _parsed(reader: YamlReader, option: TorchrunOption, node: Node, name: str,
            text: str) -> str:
    """``text`` through the table's parser, as torchrun's command line would take it."""
    try:
        value = option.value(text)
    except values.BadValue as exc:
        reader.fail(node, f"expected {exc.reason} for {name}, got {clip(text)}", exc.index)
    return option.fmt(value)


def _list(reader: YamlReader, node: SequenceNode, name: str, canonical: str) -> str:
    items = [text for _, text in reader.string_list(node, name)]
    if not items:
        reader.fail(node, f"expected at least one entry for {name}, got an empty list")
    if canonical == "local_ranks_filter":
        return _parsed(reader, BY_DEST[canonical], node, name, ",".join(items))
    for item_node, item in zip(node.value, items, strict=True):
        # torchrun's escape (',,' for a comma) cannot tell "a," + "b" from "a" + ",b".
        if item.startswith(",") or item.endswith(","):
            reader.fail(item_node, f"a filter in {name} may not start or end with ','")
    return _parsed(reader, BY_DEST[canonical], node, name, format_filters(tuple(items)))


def _nnodes(reader: YamlReader, node: Node, name: str) -> str:
    text = reader.scalar(node, name, "N or MIN:MAX")
    try:
        low, high = values.nnodes(text, MAX_HOSTS)
    except values.BadValue as exc:
        if exc.kind == "low":
            reader.fail(node, f"expected N or MIN:MAX with 1 <= MIN <= MAX for {name}, "
                              f"got {clip(text)}")
        if exc.kind == "high":
            reader.fail(node, f"expected {exc.reason} for {name}, got {clip(text)}")
        reader.fail(node, f"expected N or MIN:MAX for {name}, got {describe(node)}")
    return f"{low}:{high}" if ":" in text else str(low)


def _rdzv_conf(reader: YamlReader, node: Node, name: str) -> str:
    reader.check_tag(node)
    items: list[tuple[str, str]] = []
    if isinstance(node, MappingNode):
        for key_name, (key, value) in reader.pairs(node, name).items():
            _conf_item(reader, key, key_name, None, f"{name} key")
            text = reader.scalar(value, f"{name}.{key_name}", "a string or number")
            _conf_item(reader, value, text, None, f"{name} value", value_part=True)
            items.append((key_name, text))
    else:
        text = reader.string(node, name)
        offset = 0
        for piece in text.split(","):
            key_name, eq, value_text = piece.partition("=")
            if not eq:
                reader.fail(
                    node,
                    f"expected KEY=VALUE[,KEY=VALUE...] for {name}, got {clip(text)}",
                    offset,
                )
            _conf_item(reader, node, key_name, offset, f"{name} key")
            _conf_item(reader, node, value_text, offset + len(key_name) + 1, f"{name} value",
                       value_part=True)
            items.append((key_name, value_text))
            offset += len(piece) + 1
    if not items:
        reader.fail(node, f"expected at least one KEY=VALUE for {name}")
    return ",".join(f"{k}={v}" for k, v in items)


def _conf_item(reader: YamlReader, node: Node, text: str, index: int | None, what: str, *,
               value_part: bool = False) -> None:
    if value_part:
        if values.conf_value_problem(text) is not None:
            reader.fail(
                node,
                f"unexpected character in {what} {clip(text)}: ',', '=', spaces and "
                "control characters cannot be passed",
                index,
            )
    elif not values.CONF_KEY.fullmatch(text):
        reader.fail(
            node,
            f"expected {what} of letters, digits, '_', '.' or '-', got {clip(text)}",
            index,
        )
