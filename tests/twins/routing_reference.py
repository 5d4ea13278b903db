"""Pure-Python reference twin of ``fastgw._core.Router``, used only by the tests.

It states the routing rules as directly as possible, with no trie and no C: for every
(priority tier, host level) in search order it collects every pattern that matches the path,
sorts them by precedence and takes the first whose methods allow the request method. The
compiled router must agree with it on every route set and request (tests/unit/test_router.py
compares them with Hypothesis). Input validation lives in the compiled router only.
`shadowed()` states the shadowed-route rules by comparing every pair of routes.
"""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")

LITERAL, PARAM, CATCHALL = 0, 1, 2  # also the precedence of segment kinds

Segment = tuple[int, str]
Result = tuple[object, ...]


@dataclass(frozen=True)
class _Pattern:
    pattern_id: int
    segments: tuple[Segment, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class _Route:
    route_id: int
    host_keys: tuple[str | None, ...]
    patterns: tuple[_Pattern, ...]
    methods: frozenset[str] | None  # None: any method
    priority: int


def parse_pattern(pattern: str) -> tuple[tuple[Segment, ...], tuple[str, ...]]:
    """ "/users/{id}" -> ((LITERAL, "users"), (PARAM, "")), ("id",)."""
    segments: list[Segment] = []
    names: list[str] = []
    for part in pattern[1:].split("/"):
        if part.startswith("{*") and part.endswith("}"):
            segments.append((CATCHALL, ""))
            names.append(part[2:-1])
        elif part.startswith("{") and part.endswith("}"):
            segments.append((PARAM, ""))
            names.append(part[1:-1])
        else:
            segments.append((LITERAL, part))
    return tuple(segments), tuple(names)


def _host_key(host: str) -> str:
    host = host.lower()
    return host[1:] if host.startswith("*.") else host


def _host_levels(host: str) -> list[str | None]:
    """Host keys in search order: exact, wildcard suffixes longest first, then any host."""
    levels: list[str | None] = [] if host.startswith(".") else [host]
    levels += [host[i:] for i in range(1, len(host)) if host[i] == "."]
    levels.append(None)
    return levels


def match_segments(segments: tuple[Segment, ...], path: str) -> list[str] | None:
    """Capture values when `path` matches the pattern, else None."""
    if not path.startswith("/"):
        return None
    parts = path[1:].split("/")
    captures: list[str] = []
    for index, (kind, literal) in enumerate(segments):
        if kind == CATCHALL:
            captures.append("/".join(parts[index:]))
            return captures
        if index >= len(parts):
            return None
        if kind == LITERAL and parts[index] != literal:
            return None
        if kind == PARAM:
            if not parts[index]:
                return None
            captures.append(parts[index])
    return captures if len(parts) == len(segments) else None


class ReferenceRouter:
    """Same add()/compile()/lookup() contract as the compiled Router."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._next_pattern = 0
        self._other_methods: list[str] = []

    def add(
        self,
        route_id: int,
        hosts: list[str],
        patterns: list[str],
        methods: list[str] | None = None,
        priority: int = 0,
    ) -> list[int]:
        parsed = []
        for text in patterns:
            segments, names = parse_pattern(text)
            parsed.append(_Pattern(self._next_pattern, segments, names))
            self._next_pattern += 1
        keys: tuple[str | None, ...] = tuple(dict.fromkeys(_host_key(h) for h in hosts or ()))
        for method in methods or ():
            if method.upper() not in METHODS and method.upper() not in self._other_methods:
                self._other_methods.append(method.upper())
        self._routes.append(
            _Route(
                route_id,
                keys or (None,),
                tuple(parsed),
                frozenset(m.upper() for m in methods) if methods else None,
                priority,
            )
        )
        return [p.pattern_id for p in parsed]

    def compile(self) -> None:
        """Nothing to build; present so tests drive both routers the same way."""

    def path_matches(
        self, priority: int, level: str | None, path: str
    ) -> list[tuple[_Route, _Pattern, list[str]]]:
        """Every (route, pattern, captures) matching `path` on one level, best first."""
        found = []
        for route in self._routes:
            if route.priority != priority or level not in route.host_keys:
                continue
            for pattern in route.patterns:
                captures = match_segments(pattern.segments, path)
                if captures is not None:
                    kinds = tuple(kind for kind, _ in pattern.segments)
                    found.append(
                        (kinds, route.route_id, pattern.pattern_id, route, pattern, captures)
                    )
        found.sort(key=lambda item: item[:3])
        return [(route, pattern, captures) for *_, route, pattern, captures in found]

    def lookup(self, method: str, host: str, path: str) -> Result:
        allowed: set[str] | None = None
        for priority in sorted({r.priority for r in self._routes}, reverse=True):
            for level in _host_levels(host.lower()):
                matches = self.path_matches(priority, level, path)
                for route, pattern, captures in matches:
                    if _takes(route, method):
                        return (
                            "found",
                            route.route_id,
                            pattern.pattern_id,
                            dict(zip(pattern.names, captures, strict=True)),
                        )
                if matches and allowed is None:
                    allowed = set().union(*(self._allows(route) for route, _, _ in matches))
        if allowed:
            # The standard methods in their order, then the others in the order routes named
            # them.
            others = [m for m in self._other_methods if m in allowed]
            return ("method_not_allowed", [m for m in METHODS if m in allowed] + others)
        return ("not_found",)

    def _allows(self, route: _Route) -> set[str]:
        """The Allow set a route contributes to a 405."""
        if route.methods is None:
            return {m for m in (*METHODS, *self._other_methods) if _takes(route, m)}
        return set(route.methods)

    def shadowed(self) -> list[tuple[int, int]]:
        """[(route_id, by_route_id)]: the compiled Router.shadowed() contract, pair by pair.

        A is shadowed when each (pattern, host key) of A has a route B that always wins
        there for every method of A: same priority, same host key, same pattern shape, lower
        route id; or higher priority, hosts covering A's host and a pattern matching every
        path A's does. B is the first such route for A's first pair: a same-priority one
        (lowest pattern id) before a higher-priority one (highest priority, earliest added).
        """
        higher = sorted(self._routes, key=lambda route: -route.priority)
        result = []
        for a in sorted(self._routes, key=lambda route: route.route_id):
            shadower = None
            for pattern in a.patterns:
                for key in a.host_keys:
                    by = self._shadower(a, pattern, key, higher)
                    if by is None:
                        break
                    shadower = by if shadower is None else shadower
                else:
                    continue
                break
            else:
                if shadower is not None:
                    result.append((a.route_id, shadower))
        return result

    def _shadower(
        self, a: _Route, pattern: _Pattern, key: str | None, higher: list[_Route]
    ) -> int | None:
        same_shape = sorted(
            (other.pattern_id, b.route_id)
            for b in self._routes
            for other in b.patterns
            if _shape(other.segments) == _shape(pattern.segments)
            and b.route_id < a.route_id
            and b.priority == a.priority
            and key in b.host_keys
            and _methods_cover(b.methods, a.methods)
        )
        if same_shape:
            return same_shape[0][1]
        for b in higher:
            if b.priority <= a.priority:
                break
            if (
                _methods_cover(b.methods, a.methods)
                and any(_host_covers(general, key) for general in b.host_keys)
                and any(_generalises(other.segments, pattern.segments) for other in b.patterns)
            ):
                return b.route_id
        return None


def _shape(segments: tuple[Segment, ...]) -> tuple[object, ...]:
    return tuple(literal if kind == LITERAL else kind for kind, literal in segments)


def _takes(route: _Route, method: str) -> bool:
    """A route without methods takes any method but TRACE (and CONNECT, never routed)."""
    if route.methods is None:
        return method not in ("TRACE", "CONNECT")
    return method in route.methods


def _methods_cover(general: frozenset[str] | None, specific: frozenset[str] | None) -> bool:
    if general is None:
        return specific is None or not specific & {"TRACE", "CONNECT"}
    return specific is not None and specific <= general


def _host_covers(general: str | None, specific: str | None) -> bool:
    """Every host matching key `specific` also matches key `general`."""
    if general is None or general == specific:
        return True
    return (
        specific is not None
        and general.startswith(".")
        and specific.endswith(general)
        and len(specific) > len(general)
    )


def _generalises(general: tuple[Segment, ...], specific: tuple[Segment, ...]) -> bool:
    """Every path `specific` matches is matched by `general`."""
    for index, (kind, literal) in enumerate(general):
        if kind == CATCHALL:
            return True
        if index >= len(specific):
            return False
        other_kind, other_literal = specific[index]
        if kind == LITERAL and (other_kind != LITERAL or other_literal != literal):
            return False
        if kind == PARAM and (
            other_kind == CATCHALL or (other_kind == LITERAL and not other_literal)
        ):
            return False  # {param} needs a non-empty segment
    return len(general) == len(specific)
