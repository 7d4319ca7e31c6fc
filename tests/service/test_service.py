"""The engine service: one thread owns the model; requests are answered by events tagged with
their id, stale loads are dropped, interactive requests go first, cancel is per request."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import pytest

from smolchat.engine import EngineSettings, Message, SamplingParams
from smolchat.engine.engine import Engine
from smolchat.errors import SmolChatError
from smolchat.service import (
    CANCELLED,
    CLOSED,
    REPLACED,
    Cancelled,
    Counted,
    CountRequest,
    Delta,
    EngineService,
    Failed,
    Loaded,
    Loading,
    LoadRequest,
    PrefillFinished,
    PrefillRequest,
    Priority,
    Progress,
    SpeedChanged,
    TurnFinished,
    TurnRequest,
    Unloaded,
    UnloadRequest,
    engine_service,
    next_request_id,
)
from tests.helpers import GREEDY
from tests.service.snapshots import native_objects_in

# Runs until cancelled: the context (4096) fills long before this many tokens.
ENDLESS = SamplingParams(temperature=0.0, max_tokens=100_000, ignore_eos=True, repeat_penalty=1.0)
HELLO = (Message.user("Hello"),)


class Recorder:
    """The service's callback: keeps every event and the thread it came on, and can hold the
    service's thread on one event until the test lets it go."""

    def __init__(self) -> None:
        self.events: list = []
        self.threads: dict[int, str] = {}  # request id -> thread of its last event
        self.held, self.release = threading.Event(), threading.Event()
        self._hold = None

    def hold_at(self, matches) -> None:
        self._hold = matches

    def __call__(self, event) -> None:
        self.events.append(event)
        self.threads[event.request_id] = threading.current_thread().name
        if self._hold is not None and self._hold(event):
            self._hold = None
            self.held.set()
            self.release.wait(120)

    def of(self, request_id: int) -> list:
        return [e for e in self.events if e.request_id == request_id]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def service(recorder):
    service = EngineService(recorder)
    yield service
    recorder.release.set()
    service.close()


def load(service: EngineService, tiny_pair, name: str = "tiny", n_ctx: int = 4096) -> Loaded:
    text, mmproj = tiny_pair
    final = service.stream(LoadRequest(name, text, mmproj, EngineSettings(n_ctx=n_ctx))).wait()
    assert isinstance(final, Loaded), final
    return final


def hold_on_first_delta(
    service: EngineService, recorder: Recorder, sampling: SamplingParams, priority: Priority = Priority.BACKGROUND
):
    """A turn that is running, its thread held on its first piece of text."""
    turn_id = next_request_id()
    recorder.hold_at(lambda e: isinstance(e, Delta) and e.request_id == turn_id)
    stream = service.stream(TurnRequest(HELLO, sampling, threading.Event(), turn_id), priority=priority)
    assert recorder.held.wait(120)
    return stream


def test_each_request_gets_its_events_tagged_with_its_id(service, recorder, tiny_pair, images):
    loaded = load(service, tiny_pair)
    assert loaded.name == "tiny" and loaded.info.has_vision
    question = (Message.user("What is in the picture?", images=[images["small"]]),)
    counted = service.stream(CountRequest(question)).wait()
    turn = service.turn(question, GREEDY)
    events = list(turn)
    assert len({loaded.request_id, counted.request_id, turn.request_id}) == 3
    assert {e.request_id for e in events} == {turn.request_id}
    *streamed, speed, finished = events
    reading = [e for e in streamed if isinstance(e, Progress)]
    deltas = [e for e in streamed if not isinstance(e, Progress)]
    assert deltas and all(isinstance(d, Delta) for d in deltas)
    assert isinstance(speed, SpeedChanged) and isinstance(finished, TurnFinished)
    # the picture's tiles, each said as it was read, before the answer
    tiles = finished.result.stats.image_tiles_encoded
    assert [(e.stage, e.done, e.total) for e in reading][-1] == ("Reading the images", tiles, tiles)
    assert streamed.index(reading[-1]) < streamed.index(deltas[0])
    assert "".join(d.text for d in deltas) == finished.result.text
    assert finished.result.stats.generated_tokens == GREEDY.max_tokens
    # the count is the prompt the turn evaluated, images included
    assert isinstance(counted, Counted)
    assert counted.count.positions == finished.result.stats.prompt_tokens
    assert counted.count.image_tokens == finished.result.stats.image_tokens > 0
    # the callback had the same events, on the service's thread
    assert recorder.of(turn.request_id) == events
    assert set(recorder.threads.values()) == {service.thread.name}


def test_a_load_replaced_while_it_waits_is_never_loaded(service, recorder, tiny_pair):
    text, mmproj = tiny_pair
    settings = EngineSettings(n_ctx=4096)
    first = LoadRequest("first", text, mmproj, settings, next_request_id())
    recorder.hold_at(lambda e: isinstance(e, Loading) and e.request_id == first.id)
    service.submit(first)
    assert recorder.held.wait(120)  # the service's thread is busy with the first load
    replaced = service.stream(LoadRequest("replaced", text, mmproj, settings))
    wanted = service.stream(LoadRequest("wanted", text, mmproj, settings))
    assert list(replaced) == [Cancelled(replaced.request_id, REPLACED)]  # at once: the thread is still held
    recorder.release.set()
    assert isinstance(wanted.wait(), Loaded)
    assert recorder.of(replaced.request_id) == [Cancelled(replaced.request_id, REPLACED)]
    # the load already under way ends; its client drops it by id
    assert [e.name for e in recorder.events if isinstance(e, Loaded)] == ["first", "wanted"]


def test_an_unload_drops_a_load_still_waiting(service, recorder, tiny_pair):
    load(service, tiny_pair)
    hold_on_first_delta(service, recorder, GREEDY)
    text, mmproj = tiny_pair
    waiting = service.stream(LoadRequest("waiting", text, mmproj, EngineSettings(n_ctx=4096)))
    unload = service.stream(UnloadRequest())
    assert waiting.wait() == Cancelled(waiting.request_id, REPLACED)
    recorder.release.set()
    assert unload.wait() == Unloaded(unload.request_id)
    after = service.turn(HELLO, GREEDY).wait()
    assert after == Failed(after.request_id, "No model is loaded yet.")


def test_cancelling_a_queued_request_takes_it_out(service, recorder, tiny_pair, images):
    load(service, tiny_pair)
    hold_on_first_delta(service, recorder, GREEDY)
    queued = service.turn(HELLO, GREEDY)
    prefill = service.stream(
        PrefillRequest((Message.user("", images=[images["small"]]),), threading.Event(), next_request_id())
    )
    assert queued.cancel() and service.cancel(prefill.request_id)
    assert list(queued) == [Cancelled(queued.request_id, CANCELLED)]  # at once: the thread is still held
    assert list(prefill) == [Cancelled(prefill.request_id, CANCELLED)]
    assert not service.cancel(queued.request_id)  # nothing left to cancel
    recorder.release.set()
    assert isinstance(service.turn(HELLO, GREEDY).wait(), TurnFinished)
    assert recorder.of(queued.request_id) == [Cancelled(queued.request_id, CANCELLED)]  # it never ran


def test_a_prefill_given_up_while_it_waits_does_not_read_its_images(service, recorder, tiny_pair, images):
    load(service, tiny_pair)
    hold_on_first_delta(service, recorder, GREEDY)
    given_up = threading.Event()
    prefill = service.stream(PrefillRequest((Message.user("", images=[images["photo"]]),), given_up, next_request_id()))
    given_up.set()  # how the window gives up: the request's own event
    recorder.release.set()
    assert prefill.wait() == Cancelled(prefill.request_id, CANCELLED)


def test_cancelling_a_running_turn_stops_it_and_keeps_the_answer_so_far(service, recorder, tiny_pair):
    load(service, tiny_pair)
    turn = hold_on_first_delta(service, recorder, ENDLESS)
    assert turn.cancel()
    recorder.release.set()
    events = list(turn)
    final = events[-1]
    assert isinstance(final, TurnFinished) and final.result.stats.finish_reason == "cancelled"
    assert final.result.text == "".join(e.text for e in recorder.of(turn.request_id) if isinstance(e, Delta))
    assert 0 < final.result.stats.generated_tokens < 4096
    assert isinstance(service.turn(HELLO, GREEDY).wait(), TurnFinished)  # the model is still usable


def test_interactive_requests_go_first_and_a_running_turn_is_not_preempted(service, recorder, tiny_pair):
    load(service, tiny_pair)
    running = hold_on_first_delta(service, recorder, GREEDY, Priority.BACKGROUND)
    background = [service.stream(CountRequest(HELLO), priority=Priority.BACKGROUND) for _ in range(2)]
    interactive = [service.stream(CountRequest(HELLO), priority=Priority.INTERACTIVE) for _ in range(2)]
    recorder.release.set()
    assert all(isinstance(s.wait(), Counted) for s in background + interactive)
    ran = [e.request_id for e in recorder.events if isinstance(e, (TurnFinished, Counted))]
    assert ran == [running.request_id] + [s.request_id for s in interactive + background]
    assert running.wait().result.stats.finish_reason == "length"


@dataclass
class _Holder:
    value: object


def test_the_snapshot_check_finds_an_engine_wherever_it_is(tiny_engine):
    assert native_objects_in(_Holder({"events": [(1, tiny_engine)]}), "x") == [
        "x.value['events'][0][1]: smolchat.engine.engine.Engine"
    ]
    assert native_objects_in(lambda: tiny_engine)  # captured by a closure
    assert native_objects_in(tiny_engine.info()) == []


def test_no_event_holds_the_engine_or_anything_of_llama_cpp(service, recorder, tiny_pair, images, tmp_path):
    service.turn(HELLO, GREEDY).wait()  # no model yet: fails
    load(service, tiny_pair)
    look = (Message.user("Look", images=[images["small"]]),)
    assert isinstance(
        service.stream(PrefillRequest(look, threading.Event(), next_request_id())).wait(), PrefillFinished
    )
    service.stream(CountRequest(look)).wait()
    service.turn(look, GREEDY).wait()
    turn = hold_on_first_delta(service, recorder, ENDLESS)
    turn.cancel()
    recorder.release.set()
    turn.wait()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    service.stream(LoadRequest("broken", broken, None, EngineSettings())).wait()
    kinds = {type(e) for e in recorder.events}
    assert {Loading, Loaded, PrefillFinished, Counted, Delta, SpeedChanged, TurnFinished, Failed} <= kinds
    assert native_objects_in(recorder.events, "events") == []


def test_failures_end_with_a_message_for_a_person(service, tiny_pair, tmp_path, monkeypatch):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(SmolChatError) as expected:
        Engine(broken)
    failed = service.stream(LoadRequest("broken", broken, None, EngineSettings())).wait()
    assert failed == Failed(failed.request_id, str(expected.value))  # SmolChat's own message, as it is

    def bug(_request):
        raise RuntimeError("llama_model_load returned NULL")

    with monkeypatch.context() as patch:
        patch.setattr(engine_service, "load_engine", bug)  # stands in for a bug or a llama.cpp failure
        failed = service.stream(LoadRequest("tiny", *tiny_pair, EngineSettings())).wait()
    assert failed.message == "tiny could not be loaded (RuntimeError: llama_model_load returned NULL)."

    load(service, tiny_pair, n_ctx=64)  # the service goes on
    overflow = service.turn((Message.user("word " * 200),), GREEDY).wait()
    assert isinstance(overflow, Failed) and "but the context holds 64" in overflow.message


def test_close_stops_the_turn_drops_the_queue_unloads_and_joins(recorder, tiny_pair, monkeypatch):
    engines = []

    def recorded(request):
        engine = opened(request)
        engines.append(weakref.ref(engine))
        return engine

    opened = engine_service.load_engine
    monkeypatch.setattr(engine_service, "load_engine", recorded)
    service = EngineService(recorder)
    load(service, tiny_pair)
    turn = hold_on_first_delta(service, recorder, ENDLESS)
    queued = service.stream(CountRequest(HELLO))
    closing = threading.Thread(target=service.close)
    closing.start()
    assert list(queued) == [Cancelled(queued.request_id, CLOSED)]
    recorder.release.set()
    closing.join(120)
    assert not closing.is_alive() and not service.thread.is_alive()
    assert turn.wait().result.stats.finish_reason == "cancelled"
    engine = engines[0]()
    assert engine is None or not engine.loaded
    late = service.stream(CountRequest(HELLO)).wait()
    assert late == Cancelled(late.request_id, CLOSED)
