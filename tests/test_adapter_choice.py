"""Each stage's adapter is chosen from the environment when the definitions load (README: "Real models"):
every variable, pointed at a tiny model made here, switches its own stage and no other, Chatterbox wins
over VITS, nothing set means the embedded backends, and loading imports no model library."""

import json
import os
import subprocess
import sys

import pytest
from film_checks import sparkle

ADAPTER_PREFIXES = ("SCRIPT_AGENT_", "IMAGES_SDXL_", "VIDEOS_WAN_", "TTS_VITS_", "TTS_CHATTERBOX_", "WAV2LIP_")
EMBEDDED = {"artifact_store": "ArtifactStoreResource", "planner": "TemplatePlanner", "speech": "EspeakSpeech",
            "keyframes": "StoryboardKeyframes", "clips": "AnimaticClips", "assembler": "FfmpegAssembler",
            "lipsync": "PassthroughLipsync", "step_values": "StepValuesIOManager"}
HEAVY = ("torch", "diffusers", "transformers", "cv2", "skimage", "duckdb")

# Loads the definitions once per environment (a reload re-reads it) and reports each resource's class and
# the model it points at, then which heavy modules the process holds.
PROBE = r"""
import importlib, json, os, sys
prefixes, scenarios = json.loads(sys.argv[1])
reports, definitions = [], None
for env in scenarios:
    for name in [n for n in os.environ if n.startswith(tuple(prefixes))]:
        del os.environ[name]
    os.environ.update(env)
    if definitions is None:
        import sparkle_motion_dagster.definitions as definitions
    else:
        definitions = importlib.reload(definitions)
    reports.append({key: [type(resource).__name__,
                          next((str(getattr(resource, f)) for f in ("checkpoint", "python", "model")
                                if isinstance(getattr(resource, f, None), str)), None)]
                    for key, resource in definitions.defs.resources.items()})
print(json.dumps({"reports": reports, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    made = sparkle("dev", "make-tiny-models", folder)
    assert made.code == 0, made.stderr
    return {"sdxl": folder / "sdxl", "wan": folder / "wan-flf2v", "vits": folder / "vits",
            "wav2lip": folder / "wav2lip" / "wav2lip_tiny.pth"}


def probe(scenarios: list[dict]) -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith(ADAPTER_PREFIXES)}
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps([ADAPTER_PREFIXES, scenarios])],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_each_adapter_variable_switches_its_own_stage_and_loading_imports_no_model_library(tiny):
    for path in tiny.values():
        assert path.exists(), path
    # variable -> (resource key, class it selects, the model it points at)
    switches = {
        "IMAGES_SDXL_MODEL": ("keyframes", "SdxlKeyframes", str(tiny["sdxl"])),
        "VIDEOS_WAN_MODEL": ("clips", "WanClips", str(tiny["wan"])),
        "TTS_VITS_MODEL": ("speech", "VitsSpeech", str(tiny["vits"])),
        "WAV2LIP_CHECKPOINT": ("lipsync", "Wav2LipLipsync", str(tiny["wav2lip"])),
        "TTS_CHATTERBOX_PYTHON": ("speech", "ChatterboxSpeech", sys.executable),
        "SCRIPT_AGENT_MODEL": ("planner", "LlmPlanner", "tiny-planner"),
    }
    extra = {"SCRIPT_AGENT_MODEL": {"SCRIPT_AGENT_BASE_URL": "http://127.0.0.1:9/v1"}}
    singles = [{variable: value, **extra.get(variable, {})} for variable, (_, _, value) in switches.items()]
    everything = {k: v for env in singles for k, v in env.items()}
    without_chatterbox = {k: v for k, v in everything.items() if k != "TTS_CHATTERBOX_PYTHON"}
    result = probe([{}, *singles, without_chatterbox, everything])
    reports = result["reports"]

    embedded = {key: cls for key, (cls, _) in reports[0].items()}
    assert embedded == EMBEDDED
    for (variable, (key, cls, value)), report in zip(switches.items(), reports[1:]):
        assert report[key] == [cls, value], variable
        others = {k: c for k, (c, _) in report.items() if k != key}
        assert others == {k: c for k, c in EMBEDDED.items() if k != key}, f"{variable} switched another stage"
    chosen = {key: cls for key, (cls, _) in reports[-2].items()}
    assert chosen == {**EMBEDDED, "planner": "LlmPlanner", "speech": "VitsSpeech", "keyframes": "SdxlKeyframes",
                      "clips": "WanClips", "lipsync": "Wav2LipLipsync"}
    assert reports[-1]["speech"][0] == "ChatterboxSpeech"  # it wins over VITS when both are set
    assert result["heavy"] == [], f"loading the definitions imported {result['heavy']}"
