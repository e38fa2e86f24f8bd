"""Text to speech: pinyin conversion, the espeak-ng phrase check, rendering and its cache."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from audio.tts import Tts, TtsUnavailable, to_pinyin

PHRASES = Path(__file__).parent.parent / "data" / "warning_phrases.txt"
HAN = re.compile(r"[\u4e00-\u9fff]")
SYLLABLE = re.compile(r"\b[a-z]+[1-5]\b")
LETTER = re.compile(r"\b[A-Z]\b")


def phrases() -> list[str]:
    lines = PHRASES.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("注意", "zhu4 yi4"),
        ("洪水警报", "hong2 shui3 jing3 bao4"),
        ("请注意，立即撤离。", "qing3 zhu4 yi4, li4 ji2 che4 li2."),
        ("紧急通知：转移", "jin3 ji2 tong1 zhi1; zhuan3 yi2"),
        ("好的吧", "hao3 de5 ba5"),  # neutral tone as 5
        ("绿色", "lv4 se4"),
        ("银行", "yin2 hang2"),  # polyphone from the phrase dictionary
        ("10000人", "yi1 wan4 ren2"),  # espeak alone would say 十千
        ("第10005号", "di4 yi1 wan4 ling2 wu3 hao4"),
        ("15米", "shi2 wu3 mi3"),
        ("水位32.5米", "shui3 wei4 san1 shi2 er4 dian3 wu3 mi3"),
        ("2026年", "er4 ling2 er4 liu4 nian2"),
        ("拨打119", "bo1 da3 yao1 yao1 jiu3"),
        ("湿度95%", "shi1 du4 bai3 fen1 zhi1 jiu3 shi2 wu3"),
        ("气温-5℃", "qi4 wen1 ling2 xia4 wu3 she4 shi4 du4"),
        ("50-80mm", "wu3 shi2 dao4 ba1 shi2 hao2 mi3"),
        ("8:30", "ba1 dian3 san1 shi2 fen1"),
        ("CO超标", "C O chao1 biao1"),
        ("ＣＯ１２０", "C O yi4 bai3 er4 shi2"),  # full-width forms
        ("“台风”（强）……注意！！", "tai2 feng1, qiang2.\nzhu4 yi4."),
        ("撤离😀★", "che4 li2"),
        ("。。。", ""),
    ],
)
def test_to_pinyin(text: str, expected: str) -> None:
    assert to_pinyin(text).replace(".\n ", ".\n") == expected


def test_phrase_file_is_real_and_large() -> None:
    lines = phrases()
    assert len(lines) >= 200 and len(set(lines)) == len(lines)
    topics = [
        "山洪",
        "地质灾害",
        "台风",
        "暴雨",
        "地震",
        "森林火",
        "一氧化碳",
        "泄漏",
        "转移",
        "撤离",
        "注意",
        "警戒",
    ]
    for word in topics:
        assert any(word in line for line in lines), word


def test_every_warning_phrase_is_read_as_mandarin_syllables() -> None:
    """espeak-ng -x on the pinyin: no (en) fallback, and one Mandarin syllable per pinyin one."""
    spoken = [to_pinyin(line) for line in phrases()]
    for line, pinyin in zip(phrases(), spoken, strict=True):
        assert pinyin.isascii(), (line, pinyin)
        assert len(SYLLABLE.findall(pinyin)) >= len(HAN.findall(line)), (line, pinyin)
    batch = "\n".join(p.replace("\n", " ") for p in spoken) + "\n"
    done = subprocess.run(
        ["espeak-ng", "-x", "-q", "-v", "cmn-latn-pinyin", "--stdin"],
        input=batch.encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    phonemes = done.stdout.decode()
    if "(en)" in phonemes:  # name the culprits (slow path, only on failure)
        bad = [p for p in spoken if "(en)" in _phonemes(p)]
        pytest.fail(f"English fallback for: {bad[:10]}")
    expected = sum(len(SYLLABLE.findall(p)) + len(LETTER.findall(p)) for p in spoken)
    assert phonemes.count("_|") == expected


def _phonemes(text: str) -> str:
    cmd = ["espeak-ng", "-x", "-q", "-v", "cmn-latn-pinyin", text]
    return subprocess.run(cmd, capture_output=True, check=True).stdout.decode()


def test_plain_cmn_voice_would_fall_back_to_english() -> None:
    """Why the pinyin detour exists: the cmn dictionary spells 注, 意, 洪 … in English."""
    cmd = ["espeak-ng", "-x", "-q", "-v", "cmn", "注意洪水"]
    assert "(en)" in subprocess.run(cmd, capture_output=True, check=True).stdout.decode()


def counting_engine(tmp_path: Path) -> tuple[Path, Path]:
    """An engine wrapper that logs each call, then runs the real espeak-ng."""
    log = tmp_path / "calls.log"
    script = tmp_path / "espeak-counting"
    real = shutil.which("espeak-ng")
    script.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return script, log


def test_render_speaks_and_caches(tmp_path: Path) -> None:
    engine, log = counting_engine(tmp_path)
    tts = Tts(tmp_path / "cache", engine=str(engine), rate=16000)
    text = "紧急通知：请沿河群众立即转移。"
    pcm = tts.render(text)
    seconds = len(pcm) / 2 / 16000
    assert 1.0 < seconds < 10.0 and any(pcm)
    assert tts.render(text) == pcm  # from the cache ...
    renders = [line for line in log.read_text().splitlines() if "-w" in line]
    assert len(renders) == 1  # ... so espeak-ng synthesised once
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [tts.cache_path(text).name]
    assert "cmn-latn-pinyin" in log.read_text()


def test_render_at_another_rate_and_same_text_other_voice(tmp_path: Path) -> None:
    a = Tts(tmp_path / "cache", rate=22050).render("注意")
    b = Tts(tmp_path / "cache", rate=11025).render("注意")
    assert len(a) == pytest.approx(2 * len(b), abs=4)
    cmn = Tts(tmp_path / "cache", voice="cmn")
    assert cmn.cache_path("注意") != Tts(tmp_path / "cache").cache_path("注意")


def test_cache_is_pruned_to_its_limit(tmp_path: Path) -> None:
    tts = Tts(tmp_path / "cache", max_cache_files=2)
    for text in ("一", "二", "三"):
        tts.render(text)
    assert len(list((tmp_path / "cache").glob("*.wav"))) == 2
    assert not tts.cache_path("一").exists()


def test_missing_engine_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(TtsUnavailable, match="not installed"):
        Tts(tmp_path, engine=str(tmp_path / "no-espeak")).render("注意")


def test_disabled_tts_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(TtsUnavailable, match="disabled"):
        Tts(tmp_path, engine="none").render("注意")


def test_failing_engine_is_unavailable_and_caches_nothing(tmp_path: Path) -> None:
    engine = tmp_path / "broken-espeak"
    engine.write_text("#!/bin/sh\necho 'voice not found' >&2\nexit 1\n")
    engine.chmod(0o755)
    with pytest.raises(TtsUnavailable, match="voice not found"):
        Tts(tmp_path / "cache", engine=str(engine)).render("注意")
    assert list((tmp_path / "cache").glob("*")) == []


def test_unknown_voice_is_unavailable(tmp_path: Path) -> None:
    # espeak-ng itself would quietly read it with its English voice
    with pytest.raises(TtsUnavailable, match="no voice"):
        Tts(tmp_path / "cache", voice="no-such-voice").render("注意")
    Tts(tmp_path / "cache", voice="cmn+f3").check()  # a variant of a known voice is fine


def test_empty_text_is_no_speech(tmp_path: Path) -> None:
    assert Tts(tmp_path / "cache").render("  。 ") == b""
