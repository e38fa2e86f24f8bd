"""Puts the programme parts together for the service: book, scheduler, receiver, speech.

The service calls `start_programmes` once its store, broadcast queue and intake exist,
and gets back the scheduler (for its tick and for the next items in the state).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from audio.broadcast import Speech
from audio.broadcast_queue import BroadcastQueue
from audio.clips import decode_wav, load_clip
from gateway.clock import StationClock
from gateway.config.model import Config
from gateway.downlink.intake import Intake
from gateway.downlink.scope import authorised
from gateway.programmes.book import ProgrammeBook
from gateway.programmes.model import ItemBase
from gateway.programmes.receiver import ScheduleReceiver
from gateway.programmes.scheduler import ProgrammeScheduler
from gateway.programmes.timetable import local_slots
from gateway.store.outbox import Store


def item_speech(config: Config, intake: Intake) -> Callable[[ItemBase], Speech | None]:
    """What an item says: inline audio, else a clip, else its text through TTS (as alerts)."""

    def speech(item: ItemBase) -> Speech | None:
        audio = item.inline_audio()
        if audio is not None:
            pcm = decode_wav(audio.data, intake.rate)
            return lambda: pcm
        if item.clip is not None:
            pcm = load_clip(config.audio.clips_dir, item.clip, intake.rate)
            return lambda: pcm
        if item.text:
            return intake.broadcasts.tts(item.text)
        return None

    return speech


def start_programmes(
    config: Config,
    store: Store,
    queue: BroadcastQueue,
    intake: Intake,
    clock: StationClock,
    loop: asyncio.AbstractEventLoop,
) -> ProgrammeScheduler:
    """Load the schedules kept, resume unfinished items, and route programme envelopes."""
    book = ProgrammeBook(store)

    def call_later(delay: float, callback: Callable[[], None]) -> Any:
        return loop.call_later(max(0.0, delay), callback)

    scheduler = ProgrammeScheduler(
        book,
        local_slots(config.programmes),
        log_=store.alerts,
        submit=queue.submit,
        clock=clock,
        speech=item_speech(config, intake),
        receipt=intake.receipts.receipt,
        call_later=call_later,
    )
    receiver = ScheduleReceiver(
        book,
        station_area=config.station.area,
        station_topic=f"{config.mqtt.topic_prefix}/station/{config.station.id}/programme",
        clips_dir=config.audio.clips_dir,
        rate=intake.rate,
        receipt=intake.receipts.receipt,
        reject_downlink=intake.rejections.reject,
        on_change=scheduler.schedules_changed,
        may=lambda key, type_, areas: authorised(intake.scopes[key], type_, areas),
    )
    intake.on_programme = receiver.handle
    scheduler.resume()
    scheduler.tick()
    return scheduler
