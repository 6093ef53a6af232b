"""The embedded speech engine: espeak-ng formant synthesis in process, no weights (GPL-3)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from sparkle_motion_dagster.film.dialogue import espeak_language, espeak_rate, espeak_voice_for
from sparkle_motion_dagster.film.plan import VoiceProfile
from sparkle_motion_dagster.film.speech_fit import SpeechPace
from sparkle_motion_dagster.resources.speech import ChunkSpeech, SpeechEngine

# espeak-ng's pace at its rate R (words per minute): 10 / R seconds a character, 0.35 s a clause
# break, 0.3 s of lead. Measured on the template planner's lines at rates 80 to 300, it errs long
# (on average by 0.7 s; at most 0.65 s short, at the slowest rates), except for digits, which are
# spoken as words.
CHARS_PER_RATE = 10.0


class EspeakSpeech(SpeechEngine):
    """Embedded speech: espeak-ng formant synthesis, a distinct voice per character.

    Robotic but real, instant and weight-free; GPL-3 (see the README). Visemes
    come from the synthesis's own phoneme events.
    """

    backend: ClassVar[str] = "espeak-ng"
    words_per_minute: int = Field(165, ge=1)

    def pace(self, voice_profile: VoiceProfile | None = None) -> SpeechPace:
        rate = espeak_rate(voice_profile or VoiceProfile(), self.words_per_minute)
        return SpeechPace(seconds_per_char=CHARS_PER_RATE / max(rate, 1), pause_s=0.35, lead_s=0.3)

    def measure_seconds(self, text, *, character_id, voice_profile):
        """Speak it: a line takes espeak-ng a few milliseconds."""
        return self.synthesize_line(text, character_id=character_id, voice_profile=voice_profile).duration_s

    def _speak(self, text, character_id, voice_profile):
        from sparkle_motion_dagster.media import espeak

        engine = espeak.engine()
        language = espeak_language(voice_profile.language, engine.has_voice)
        voice = espeak_voice_for(character_id, voice_profile, language=language, base_wpm=self.words_per_minute)
        samples, events = engine.synthesize_events(text, voice)
        return samples, events, engine.sample_rate, {
            "engine": f"espeak-ng {engine.version}",
            "voice": voice.name,
            "rate_wpm": voice.rate_wpm,
            "pitch": voice.pitch,
        }

    def synthesize_chunk(self, text, *, character_id, voice_profile):
        samples, _events, sample_rate, voice = self._speak(text, character_id, voice_profile)
        return samples, sample_rate, voice

    def synthesize_chunk_timed(self, text, *, character_id, voice_profile):
        from sparkle_motion_dagster.film import visemes

        samples, events, sample_rate, voice = self._speak(text, character_id, voice_profile)
        stream = visemes.espeak_stream(events, len(samples) / sample_rate)
        return ChunkSpeech(samples, sample_rate, voice, stream, "espeak-events")
