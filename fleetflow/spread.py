"""Spread constraints chosen together: which members a workload may use so that every
``spreadBy`` label is covered by between ``minGroups`` and ``maxGroups`` values. Pure.

Karmada's way (``selectRegions``, then ``selectClusters``), for any labels:

1. **Levels.** The constraints on one label are one level (bounds intersected); levels are
   ordered from the label with the fewest values among the usable members to the one with the
   most (region before zone before cluster), never in the order they are written, so the order
   never changes the answer.
2. **Value sets, coarse first.** A level whose ``maxGroups`` is below its values keeps that many
   values: every such set (at most ``_TRIED`` of them, in rank order) that still holds enough
   values of every finer level's ``minGroups`` is tried. A level with no such max keeps all.
3. **The finest level** keeps at most its max: one member per value of each coarser level first
   (so "one member per region first"), then the best ranked; the other sets of that many values
   are tried too (at most ``_TRIED``), so that a choice that holds all replicas wins.
4. **Mins.** Members that must run a replica so that every level reaches its ``minGroups``
   (greedy: the member that covers the most unmet levels first); they get a placement min of 1.
5. **The best choice.** Among the choices that meet every constraint with no more than the
   workload's replicas: the one that holds all of it, then keeps the most replicas already
   running (no needless move), then has a placement min, the most members, the most weight (the
   user's preference, where Karmada has its scores), the most room, and a stable per-workload
   order. Keeping what runs is a preference, never a reason to fail.

No choice meets them: an error that names the label, how many values could take replicas and
why the others could not; never a silent result. The caller checks the plan it divides against
the same bounds (``unmet``), so what is written never breaks them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import combinations, islice
from typing import NamedTuple, Protocol

from fleetflow.errors import PlacementError
from fleetflow.placement import Candidate, bound

_TRIED = 64
"""Value sets tried per level: every set when a level has few values (C(8, 4) = 70), the best
ranked when it has many."""


class Rule(Protocol):
    """What the choice reads of a spread constraint (``scheduling.SpreadConstraint``)."""

    @property
    def spread_by(self) -> str: ...
    @property
    def min_groups(self) -> int: ...
    @property
    def max_groups(self) -> int | None: ...
    def key(self) -> str: ...
    def value(self, name: str, labels: Mapping[str, str]) -> str | None: ...


class Level(NamedTuple):
    """One label's constraints, bounds intersected, and each member's value of it."""

    key: str
    name: str
    low: int
    high: int | None
    values: Mapping[str, str | None]

    def bounds(self) -> str:
        high = f", at most {self.high}" if self.high is not None else ""
        return f"at least {self.low}{high}"


class Choice(NamedTuple):
    """The members the workload may use, those that must run one replica, and why."""

    allowed: frozenset[str]
    forced: frozenset[str]
    summary: tuple[str, ...]
    left_out: dict[str, str]
    """Members the spread leaves out (or gives a min), and why."""


def room(c: Candidate) -> int | None:
    """Replicas a member may hold now; None: no bound."""
    return bound(c) if c.healthy and not c.fenced else 0


def _space(cs: Iterable[Candidate]) -> float:
    """The room of these members together; infinite when one has no bound."""
    rooms = [room(c) for c in cs]
    return float("inf") if any(r is None for r in rooms) else float(sum(r or 0 for r in rooms))


def usable(c: Candidate) -> bool:
    """Can take a replica now: placeable, with room, and a weight or a min."""
    space = room(c)
    return (space is None or space > 0) and (c.weight > 0 or c.min > 0)


def state(c: Candidate) -> str:
    """Why a member cannot take a replica, in a word or two."""
    if not c.healthy or c.fenced:
        return "fenced" if c.fenced else "unhealthy"
    return "full" if room(c) == 0 else "weight 0"


def levels(
    constraints: Sequence[Rule], names: Iterable[str], labels: Mapping[str, Mapping[str, str]]
) -> list[Level]:
    """One level per label, bounds intersected, with the values of ``names``; refused when
    the bounds cannot overlap."""
    merged: dict[str, Level] = {}
    names = list(names)
    for rule in constraints:
        key = rule.key()
        old = merged.get(key)
        low, high = rule.min_groups, rule.max_groups
        if old is not None:
            low = max(low, old.low)
            high = old.high if high is None else high if old.high is None else min(high, old.high)
        if high is not None and low > high:
            raise PlacementError(
                f"spread by {rule.spread_by}: its constraints ask for at least {low} and at "
                f"most {high}: keep one constraint per label"
            )
        values = old.values if old else {n: rule.value(n, labels[n]) for n in names}
        merged[key] = Level(key, old.name if old else rule.spread_by, low, high, values)
    return list(merged.values())


class _Ctx(NamedTuple):
    total: int
    by_name: Mapping[str, Candidate]
    levels: list[Level]
    workload: str | None


def choose(
    total: int,
    inside: Sequence[Candidate],
    labels: Mapping[str, Mapping[str, str]],
    constraints: Sequence[Rule],
    workload: str | None,
) -> Choice:
    """Choose the members of ``inside`` (the candidates of one affinity group) that the
    workload's ``total`` replicas may use under ``constraints``; raise ``PlacementError`` with
    the true reason when no choice meets them all."""
    by_name = {c.name: c for c in inside}
    rules = levels(constraints, by_name, labels)
    left_out: dict[str, str] = {}
    pool = []
    for c in inside:
        if not usable(c):
            continue
        missing = next((lv for lv in rules if lv.values[c.name] is None), None)
        if missing is not None:
            left_out[c.name] = f"spread by {missing.name}: it has no such label"
            continue
        pool.append(c.name)
    # Coarse first; on a tie a member's own name is the finer label.
    rules.sort(key=lambda lv: (len(_groups(lv, pool)), lv.key == "cluster", lv.key))
    ctx = _Ctx(total, by_name, rules, workload)
    best: tuple[tuple[object, ...], frozenset[str], dict[str, Level | None]] | None = None
    fewest: int | None = None  # the fewest mins a choice needs, when that is above total
    choices = list(_choices(ctx, 0, sorted(pool)))
    for allowed in choices:
        forced = _cover(ctx, allowed)
        if forced is None:
            continue
        if len(forced) > total:
            fewest = len(forced) if fewest is None else min(fewest, len(forced))
            continue
        key = _key(ctx, allowed) if len(choices) > 1 else ()  # one choice: nothing to compare
        if best is None or key < best[0]:
            best = (key, allowed, forced)
    if best is None:
        raise PlacementError(_why_not(ctx, inside, pool, fewest))
    _, allowed, forced = best
    for name in sorted(set(pool) - allowed):
        left_out[name] = _why_out(ctx, name, allowed)
    for name, level in sorted(forced.items()):
        if level is not None:
            value = level.values[name]
            left_out[name] = f"spread by {level.name}: at least 1 in {value}"
    return Choice(allowed, frozenset(forced), _summary(ctx, allowed, pool), left_out)


def unmet(
    replicas: Mapping[str, int],
    labels: Mapping[str, Mapping[str, str]],
    constraints: Sequence[Rule],
) -> str | None:
    """The first constraint a division breaks (the values it puts replicas in), or None."""
    for level in levels(constraints, replicas, labels):
        used = sorted({v for n, k in replicas.items() if k and (v := level.values[n]) is not None})
        if len(used) < level.low or (level.high is not None and len(used) > level.high):
            return (
                f"spread by {level.name} needs {level.bounds()}, but the division puts replicas "
                f"in {len(used)} ({', '.join(used) or 'none'})"
            )
    return None


# --- the search ------------------------------------------------------------------------------


def _groups(level: Level, names: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in names:
        value = level.values[name]
        if value is not None:
            out.setdefault(value, []).append(name)
    return out


def _choices(ctx: _Ctx, at: int, pool: list[str]) -> Iterator[frozenset[str]]:
    """Every choice of members worth comparing, level by level from the coarsest."""
    if not pool:
        return
    level = ctx.levels[at]
    groups = _groups(level, pool)
    if at == len(ctx.levels) - 1:
        yield from _finest(ctx, level, groups)
        return
    if level.high is None or len(groups) <= level.high:
        yield from _choices(ctx, at + 1, pool)
        return
    # A set of fewer values than the max is inside one of that many: never better.
    ranked = sorted(groups, key=lambda v: _rank_names(ctx, groups[v], v))
    finer = ctx.levels[at + 1 :]
    sets = (
        names
        for chosen in combinations(ranked, level.high)
        if _holds(ctx, finer, names := sorted(n for v in chosen for n in groups[v]))
    )
    for names in islice(sets, _TRIED):
        yield from _choices(ctx, at + 1, names)


def _holds(ctx: _Ctx, finer: Sequence[Level], names: list[str]) -> bool:
    """Whether these members still span every finer level's min."""
    return all(len(_groups(lv, names)) >= lv.low for lv in finer)


def _finest(ctx: _Ctx, level: Level, groups: Mapping[str, list[str]]) -> Iterator[frozenset[str]]:
    """The finest level's values: all when its max allows; else one per value of each coarser
    level first, then the best ranked; then the other sets of that many values, best first."""
    if level.high is None or len(groups) <= level.high:
        yield frozenset(n for names in groups.values() for n in names)
        return
    ranked = sorted(groups, key=lambda v: _rank_names(ctx, groups[v], v))
    chosen: list[str] = []
    for coarse in ctx.levels[:-1]:
        covered = {coarse.values[n] for v in chosen for n in groups[v]}
        for value in ranked:
            if len(chosen) >= level.high:
                break
            if value in chosen:
                continue
            new = {coarse.values[n] for n in groups[value]} - covered
            if new:
                chosen.append(value)
                covered |= new
    chosen += [v for v in ranked if v not in chosen][: level.high - len(chosen)]
    yield frozenset(n for v in chosen for n in groups[v])
    for values in islice(combinations(ranked, level.high), _TRIED):
        yield frozenset(n for v in values for n in groups[v])


def _cover(ctx: _Ctx, allowed: frozenset[str]) -> dict[str, Level | None] | None:
    """The members that must run a replica so that every level reaches its min, each with the
    first level it was picked for (None: its placement min runs one anyway); None when the
    allowed members cannot cover them."""
    forced: dict[str, Level | None] = dict.fromkeys(
        (n for n in allowed if ctx.by_name[n].min > 0), None
    )
    needs = [lv for lv in ctx.levels if lv.low > 1]
    if not needs:
        return forced
    covered = [{lv.values[n] for n in forced} for lv in needs]
    rest = sorted(allowed - set(forced), key=lambda n: _member_rank(ctx, n))
    while any(len(seen) < lv.low for seen, lv in zip(covered, needs, strict=True)):
        gains = [
            sum(
                1
                for seen, lv in zip(covered, needs, strict=True)
                if len(seen) < lv.low and lv.values[n] not in seen
            )
            for n in rest
        ]
        if not gains or max(gains) == 0:
            return None
        pick = rest.pop(gains.index(max(gains)))
        forced[pick] = next(
            lv
            for seen, lv in zip(covered, needs, strict=True)
            if len(seen) < lv.low and lv.values[pick] not in seen
        )
        for seen, lv in zip(covered, needs, strict=True):
            seen.add(lv.values[pick])
    return forced


def _key(ctx: _Ctx, allowed: frozenset[str]) -> tuple[object, ...]:
    cs = [ctx.by_name[n] for n in allowed]
    space = _space(cs)
    return (
        max(0.0, ctx.total - space),
        -sum(c.current for c in cs),
        -sum(c.min for c in cs),
        -len(cs),
        -sum(c.weight for c in cs),
        -space,
        _stable(ctx.workload, ",".join(sorted(allowed))),
    )


def _rank_names(ctx: _Ctx, names: list[str], value: str) -> tuple[object, ...]:
    """Values running the workload first (no needless move), then those with a min, the most
    members with room, the heaviest (weights are the user's preference), the roomiest, and a
    stable per-workload order."""
    cs = [ctx.by_name[n] for n in names]
    space = _space(cs)
    return (
        -sum(c.current for c in cs),
        -sum(c.min for c in cs),
        -len(cs),
        -sum(c.weight for c in cs),
        -space,
        _stable(ctx.workload, value),
    )


def _member_rank(ctx: _Ctx, name: str) -> tuple[object, ...]:
    c = ctx.by_name[name]
    return (
        -c.current,
        -c.weight,
        -_space([c]),
        _stable(ctx.workload, name),
    )


def _stable(workload: str | None, value: str) -> bytes:
    return hashlib.blake2b(f"{workload}\x00{value}".encode(), digest_size=8).digest()


# --- what the choice says --------------------------------------------------------------------


def _summary(ctx: _Ctx, allowed: frozenset[str], pool: list[str]) -> tuple[str, ...]:
    """Per level, the values chosen; for a coarse level with how many members with room each
    holds (of all the usable ones, before a finer max picks among them)."""
    lines = []
    last = len(ctx.levels) - 1
    for i, level in enumerate(ctx.levels):
        chosen = _groups(level, sorted(allowed))
        open_ = _groups(level, pool)
        ranked = sorted(chosen, key=lambda v: (-len(open_[v]), v))
        if all(len(open_[v]) == 1 for v in ranked):
            values = ", ".join(ranked)
        else:
            values = ", ".join(
                f"{v} ({len(open_[v])}{' members with room' if j == 0 else ''})"
                for j, v in enumerate(ranked)
            )
        first = ""
        if i and i == last and level.high is not None and len(open_) > level.high:
            first = f"; one member per {ctx.levels[i - 1].name} first"
        lines.append(f"spread by {level.name} ({level.bounds()}): {values}{first}")
    return tuple(lines)


def _why_out(ctx: _Ctx, name: str, allowed: frozenset[str]) -> str:
    for level in ctx.levels:
        value = level.values[name]
        kept = {level.values[n] for n in allowed}
        if value not in kept:
            high = level.high if level.high is not None else len(kept)
            return f"spread by {level.name}: {value} not among the {high} chosen"
    return "spread: not chosen"


def _why_not(ctx: _Ctx, inside: Sequence[Candidate], pool: list[str], fewest: int | None) -> str:
    """The true reason no choice meets the spread."""
    for level in ctx.levels:
        exist = sorted(_groups(level, [c.name for c in inside]))
        if len(exist) < level.low:
            return (
                f"spread by {level.name} needs {level.bounds()}, but its members span only "
                f"{len(exist)} ({', '.join(exist) or 'none'}): lower minGroups or add members"
            )
    for level in ctx.levels:
        open_ = _groups(level, pool)
        if len(open_) < level.low:
            others = _groups(level, [c.name for c in inside if c.name not in pool])
            why = "; ".join(
                f"{v}: " + ", ".join(f"{n} {_blocked(ctx, n)}" for n in names)
                for v, names in sorted(others.items())
                if v not in open_
            )
            return (
                f"spread by {level.name} needs {level.bounds()}, but only {len(open_)} can take "
                f"replicas now ({', '.join(sorted(open_)) or 'none'}): the others have no "
                f"healthy member with room ({why})"
            )
    wanted = "; ".join(f"{lv.name} {lv.bounds()}" for lv in ctx.levels)
    if fewest is not None:
        return f"{ctx.total} replicas cannot meet the spread ({wanted}): it needs at least {fewest}"
    return f"the spread ({wanted}) cannot be met together: {_tightest(ctx, pool)}"


def _blocked(ctx: _Ctx, name: str) -> str:
    c = ctx.by_name[name]
    return "has no such label" if usable(c) else state(c)


def _tightest(ctx: _Ctx, pool: list[str]) -> str:
    """Which coarse max leaves too few values of a finer level, with the best it can do."""
    for i, level in enumerate(ctx.levels):
        if level.high is None:
            continue
        groups = _groups(level, pool)
        for finer in ctx.levels[i + 1 :]:
            counts = {v: len(_groups(finer, names)) for v, names in groups.items()}
            top = sorted(counts, key=lambda v: (-counts[v], v))[: level.high]
            most = len(_groups(finer, [n for v in top for n in groups[v]]))
            if most < finer.low:
                held = ", ".join(f"{v} {counts[v]}" for v in top)
                return (
                    f"{level.high} value(s) of {level.name} hold at most {most} of {finer.name} "
                    f"with room ({held}), and {finer.name} needs {finer.low}"
                )
    return "no choice of members covers every label"
