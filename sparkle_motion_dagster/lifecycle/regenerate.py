"""Regenerating one shot: choose new seeds and the stages to redo."""

from __future__ import annotations

from sparkle_motion_dagster.film.plan import SEED_LIMIT, checked_seed
from sparkle_motion_dagster.lifecycle.overrides import read_overrides, seed_override, set_seed
from sparkle_motion_dagster.store.run_files import load_run_plan, read_stage_json, stage_file
from sparkle_motion_dagster.store.storage import ArtifactStore
from sparkle_motion_dagster.stages import downstream, manifest

# What can be regenerated: the stage that renders it, its manifest (list key, id key) and
# the override kind that holds its seeds.
TARGETS = {
    "clip": ("video_clips", manifest("video_clips"), "clip_assets", "shot_id", "shots"),
    "keyframe": ("base_images", manifest("base_images"), "base_image_assets", "id", "base_images"),
}



def format_seeds(seeds: dict[str, int]) -> str:
    """Seeds as a person reads them, ``frame_001 42 · frame_002 7`` (``none`` when empty)."""
    return " · ".join(f"{item} {seed}" for item, seed in seeds.items()) or "none"


def _current_seed(store: ArtifactStore, run_id: str, what: str, item_id: str) -> int:
    stage, manifest, entries, id_key, kind = TARGETS[what]
    seed = seed_override(read_overrides(store, run_id), kind, item_id)
    if seed is not None:
        return seed
    return next(e["seed"] for e in read_stage_json(store, run_id, stage, manifest)[entries] if e[id_key] == item_id)


def seeds_in_use(store: ArtifactStore, run_id: str, what: str) -> dict[str, int]:
    """Every keyframe's (or clip's) seed in the run, ``{item id: seed}``: the manifest's seeds
    with the recorded overrides on top."""
    stage, manifest, entries, id_key, kind = TARGETS[what]
    overrides = read_overrides(store, run_id)
    seeds = {}
    for entry in read_stage_json(store, run_id, stage, manifest)[entries]:
        override = seed_override(overrides, kind, entry[id_key])
        seeds[entry[id_key]] = entry["seed"] if override is None else override
    return seeds


def _free_seed(seed: int, taken: set[int]) -> int:
    """The first seed from ``seed`` on that no other item has, counting on past the last seed to 0."""
    seed %= SEED_LIMIT
    while seed in taken:
        seed = (seed + 1) % SEED_LIMIT
    return seed


def plan_regeneration(store: ArtifactStore, run_id: str, shot_id: str, *, what: str, seed: int | None) -> dict:
    """Record the new seed(s) for the shot and say which stages must run.

    ``clip`` re-renders only that shot's clip. ``keyframe`` re-renders the shot's
    start and end keyframes; the neighbouring shots share those keyframes, so
    their clips are re-rendered too (continuity), and every other file stays.
    """
    if what not in TARGETS:
        raise ValueError(f"--what: must be clip or keyframe, got {what!r}")
    if seed is not None:
        seed = checked_seed(seed, field="--seed")
    plan = load_run_plan(store, run_id)
    shot = next((s for s in plan.shots if s.id == shot_id), None)
    if shot is None:
        raise ValueError(f"--shot: {shot_id!r} is not a shot of {run_id}; shots are {', '.join(s.id for s in plan.shots)}")
    stage, manifest, _, _, kind = TARGETS[what]
    if not stage_file(store, run_id, stage, manifest).exists():
        raise ValueError(f"{run_id} has no {what}s yet; film it first (sparkle-motion resume {run_id})")
    items = [shot_id] if what == "clip" else [shot.start_base_image_id, shot.end_base_image_id]
    # A new seed is never another keyframe's (or clip's) seed in this run: a neighbour's is often
    # the current one + 1. An explicit --seed is kept as given for the first item.
    taken = {seed for item, seed in seeds_in_use(store, run_id, what).items() if item not in items}
    seeds = {}
    for offset, item_id in enumerate(items):
        if seed is not None and offset == 0:
            new = seed
        else:
            start = seed + offset if seed is not None else _current_seed(store, run_id, what, item_id) + 1
            new = _free_seed(start, taken)
        set_seed(store, run_id, kind, item_id, new)
        seeds[item_id] = new
        taken.add(new)
    return {"shot_id": shot_id, "what": what, "seeds": seeds, "stages": downstream(stage)}


def plan_character_regeneration(store: ArtifactStore, run_id: str, character_id: str, *, seed: int | None) -> dict:
    """Record a new seed for a character's drawn portrait and say which stages must run.

    The portrait is drawn again; the keyframes the character is in see a new portrait and are
    drawn again, the clips between them follow, and every other file is reused as it is.
    A portrait copied from the plan's ``reference_image`` does not depend on a seed: it stays."""
    plan = load_run_plan(store, run_id)
    character = next((c for c in plan.characters if c.id == character_id), None)
    if character is None:
        known = ", ".join(c.id for c in plan.characters) or "none"
        raise ValueError(f"--character: {character_id!r} is not a character of {run_id}; characters: {known}")
    from sparkle_motion_dagster.film.characters import MANIFEST, portrait_seed

    manifest = stage_file(store, run_id, "character_refs", MANIFEST)
    if not manifest.exists():
        raise ValueError(f"{run_id} has no character portraits yet; film it first (sparkle-motion resume {run_id})")
    current = seed_override(read_overrides(store, run_id), "characters", character_id)
    if current is None:
        entry = next((e for e in read_stage_json(store, run_id, "character_refs", MANIFEST)["characters"]
                      if e["character_id"] == character_id), {})
        current = entry.get("seed") if entry.get("seed") is not None else portrait_seed(plan, character_id)
    new = seed if seed is not None else current + 1
    set_seed(store, run_id, "characters", character_id, new)
    keyframes = [image.id for image in plan.base_images if character_id in (image.characters or [])]
    note = (f"{character_id}'s portrait is the plan's reference_image: it does not change, and neither does "
            "anything drawn from it" if character.reference_image else "")
    return {"character_id": character_id, "seeds": {character_id: new}, "keyframes": keyframes,
            "stages": downstream("character_refs"), "note": note}
