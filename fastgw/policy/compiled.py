"""What a provisioned policy hands the compiled core, and the context it compiles in.

fastgw.plan compiles a route's chain by asking each of its policies, in order, for its
`CoreParts` (`Policy.compile_core(context)`) and joining them into one `_core.CoreChain`:

- `steps`: request steps, objects of the core's step kinds (`_core.CoreStep` subclasses:
  Python hooks, direct answers, redirects, rate and concurrency limits);
- `request_ops` / `response_ops`: header operations, applied while heads are serialised;
- `response_hooks`: Python `on_response` hooks.

A Python policy's parts are its hooks (`CompileContext.hook_parts`); a built-in returns the
compiled steps that do its work without Python. A new built-in is one class with a
`compile_core`; plan.py and the core's chain need no change for it. The context says which
path patterns of the route the parts are for and resolves what differs between them
(capture indexes in templates and keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastgw import _core
from fastgw.policy.base import HOOK_ABSENT, HOOK_ASYNC, hook_kind

if TYPE_CHECKING:
    from fastgw.policy.base import Policy

__all__ = ["CompileContext", "CoreParts", "HeaderOp"]

# A policy template part (fastgw.policy.builtins.parse_template): literal bytes,
# ("var", NAME) or ("param", NAME); resolved for one path pattern: bytes or an int code.
TemplatePart = bytes | tuple[str, str]
CorePart = bytes | int


@dataclass(frozen=True, slots=True)
class HeaderOp:
    """One header operation on the lowercase field `name`: `template` for set and add,
    `new_name` for rename. Operations apply in the order a chain lists them."""

    op: Literal["set", "add", "remove", "rename"]
    name: bytes
    template: tuple[Any, ...] | None = None
    new_name: bytes | None = None


@dataclass(frozen=True, slots=True)
class CoreParts:
    """What one policy contributes to its route's CoreChain, each part in chain order."""

    steps: tuple[_core.CoreStep, ...] = ()
    request_ops: tuple[HeaderOp, ...] = ()
    response_ops: tuple[HeaderOp, ...] = ()
    response_hooks: tuple[_core.ResponseHook, ...] = ()

    def __post_init__(self) -> None:
        # Checked here, where the policy that made them is still known (plan.py names it).
        for kind, items, cls in (
            ("step", self.steps, _core.CoreStep),
            ("request header operation", self.request_ops, HeaderOp),
            ("response header operation", self.response_ops, HeaderOp),
            ("response hook", self.response_hooks, _core.ResponseHook),
        ):
            if not isinstance(items, tuple):
                raise TypeError(f"CoreParts {kind}s are a tuple, got {type(items).__name__}")
            for item in items:
                if not isinstance(item, cls):
                    raise TypeError(f"not a {kind} the core runs: {item!r}")


@dataclass(frozen=True, slots=True)
class CompileContext:
    """The route a policy compiles for: its path patterns (the router's pattern ids) and
    each pattern's capture names, in capture order."""

    pattern_ids: tuple[int, ...]
    params: Mapping[int, tuple[str, ...]]
    router: Any

    @classmethod
    def for_patterns(cls, pattern_ids: Sequence[int], router: Any) -> CompileContext:
        return cls(
            tuple(pattern_ids),
            {pid: tuple(router.pattern_params(pid)) for pid in pattern_ids},
            router,
        )

    def hook_parts(self, policy: Policy) -> CoreParts:
        """A Python policy's hooks as core parts; `def` or `async def` is decided here, once."""
        on_request, on_response = hook_kind(policy)
        steps: tuple[_core.CoreStep, ...] = ()
        if on_request == HOOK_ASYNC:
            steps = (_core.AsyncHookStep(policy.on_request),)
        elif on_request != HOOK_ABSENT:
            steps = (_core.SyncHookStep(policy.on_request),)
        hooks: tuple[_core.ResponseHook, ...] = ()
        if on_response != HOOK_ABSENT:
            hooks = (_core.ResponseHook(policy.on_response, on_response == HOOK_ASYNC),)
        return CoreParts(steps=steps, response_hooks=hooks)

    def template(self, template: Sequence[TemplatePart], pattern_id: int) -> tuple[CorePart, ...]:
        """A policy template for one pattern: bytes, a capture index, or a variable code."""
        params = self.params[pattern_id]
        parts: list[CorePart] = []
        for part in template:
            if isinstance(part, bytes):
                parts.append(part)
            elif part[0] == "var":
                parts.append(_core.TEMPLATE_VARIABLES[part[1]])
            else:
                parts.append(params.index(part[1]))
        return tuple(parts)

    def templates(self, template: Sequence[TemplatePart]) -> dict[int, tuple[CorePart, ...]]:
        """`template` resolved for every pattern of the route: {pattern id: parts}."""
        return {pid: self.template(template, pid) for pid in self.pattern_ids}

    def key_sources(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, Any]]:
        """Limiter key sources as the core reads them: header names as bytes, a path
        parameter as its capture index in each pattern (-1 where the pattern lacks it)."""
        sources: list[tuple[str, Any]] = []
        for source, arg in keys:
            value: Any = arg
            if source == "header":
                value = arg.encode("latin-1")
            elif source == "param":
                value = {
                    pid: self.params[pid].index(arg) if arg in self.params[pid] else -1
                    for pid in self.pattern_ids
                }
            sources.append((source, value))
        return sources

    def header_ops(self, ops: Sequence[HeaderOp]) -> Any:
        """One side's operations of the whole chain for the core: None without any, one
        HeaderOps when every pattern resolves them alike, else {pattern id: HeaderOps}."""
        if not ops:
            return None
        by_pattern = {
            pid: tuple(
                op
                if op.template is None
                else HeaderOp(op.op, op.name, self.template(op.template, pid), op.new_name)
                for op in ops
            )
            for pid in self.pattern_ids
        }
        variants = set(by_pattern.values())
        if len(variants) == 1:
            return _core.HeaderOps(variants.pop())
        return {pid: _core.HeaderOps(resolved) for pid, resolved in by_pattern.items()}
