"""Wake-ups between the processes sharing the SQLite file (dialer/wakeups.py): what a listener hears, whom a
sender tells, and what becomes of the socket of a process that died. End to end (a Twilio callback to the API
waking `dialer worker`): tests/test_twilio_flow.py."""

from __future__ import annotations

import asyncio
import socket

from bson import ObjectId

from dialer.wakeups import WakeListener, WakeSender


async def heard_after(send) -> None:
    send()
    await asyncio.sleep(0.05)  # the datagram, read by the loop


async def test_each_other_dispatcher_hears_the_batch_and_what_became_of_its_call(tmp_path):
    heard_a, heard_b = [], []
    a = WakeListener(tmp_path / "wake", lambda b, kind: heard_a.append((b, kind)), lambda: heard_a.append("work"))
    b = WakeListener(tmp_path / "wake", lambda b, kind: heard_b.append((b, kind)), lambda: heard_b.append("work"))
    assert await a.start() and await b.start()
    sender = WakeSender(tmp_path / "wake", own=a)  # a's process: its dispatcher hears its events directly
    batch = ObjectId()
    try:
        await heard_after(lambda: sender(batch, "retry"))
        await heard_after(lambda: sender(batch, "final"))
        await heard_after(sender.work)
        assert heard_b == [(batch, "retry"), (batch, "final"), "work"] and heard_a == []
    finally:
        sender.close()
        a.close()
        b.close()
    assert list((tmp_path / "wake").iterdir()) == []  # a listener closed leaves no socket behind


async def test_the_socket_of_a_process_that_died_is_removed_by_the_next_send(tmp_path):
    folder = tmp_path / "wake"
    folder.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(folder / "1234-abcdef.sock"))
    dead.close()  # killed: its file stays, nobody reads it
    heard = []
    alive = WakeListener(folder, lambda b, kind: heard.append(b), lambda: None)
    assert await alive.start()
    sender = WakeSender(folder)
    try:
        await heard_after(lambda: sender(ObjectId(), "final"))
        assert len(heard) == 1 and [p.name for p in folder.iterdir()] == [alive.path.name]
    finally:
        sender.close()
        alive.close()


async def test_a_data_folder_too_deep_for_a_socket_falls_back_to_the_recheck(tmp_path, caplog):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "wake"
    listener = WakeListener(deep, lambda b, kind: None, lambda: None)
    assert not await listener.start()
    assert "path is too long" in caplog.text
    sender = WakeSender(deep)
    sender(ObjectId(), "final")  # nobody to tell: no error
    sender.close()


async def test_a_listener_slow_to_read_gets_every_wake_up_once_it_reads(tmp_path):
    """Found by an exploratory run under load (3 workers, ~100 calls/s): a listener's queue holds 10 datagrams on
    Linux, a datagram per ended call filled it, and the wake-ups beyond were lost (a batch waited for the 10 s
    recheck). What one turn of the loop tells goes in one datagram; what a full queue refused is sent again."""
    folder = tmp_path / "wake"
    folder.mkdir()
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # a listener whose process is busy: it reads later
    slow.bind(str(folder / "1-slow.sock"))
    slow.setblocking(False)
    sender = WakeSender(folder)
    told = [ObjectId() for _ in range(2_050)]
    try:
        for batch in told[:2_000]:  # one turn of the loop: a burst of calls ending
            sender(batch, "final")
        for batch in told[2_000:]:  # then one per turn, fifty turns: more datagrams than the queue holds
            sender(batch, "retry")
            await asyncio.sleep(0)
        heard: list[bytes] = []
        for _ in range(200):
            try:
                while True:
                    heard.append(slow.recv(65536))
            except BlockingIOError:
                await asyncio.sleep(0.01)  # the refused rest comes again 20 ms later
            if sum(len(d) for d in heard) >= 13 * len(told):
                break
        records = [d[i:i + 13] for d in heard for i in range(0, len(d), 13)]
        assert [ObjectId(r[:12]) for r in records] == told
        assert [r[12:] for r in records] == [b"f"] * 2_000 + [b"r"] * 50
    finally:
        sender.close()
        slow.close()
