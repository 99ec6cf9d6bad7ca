"""Password hashing must not freeze a gevent worker (checked in a patched subprocess)."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import time
    import gevent
    from chat.accounts import hash_password
    from chat.concurrency import event_type, gevent_patched

    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.005)

    g = gevent.spawn(ticker)
    gevent.sleep(0.02)
    before = len(ticks)
    start = time.monotonic()
    hash_password("correct horse", "scrypt")
    took = time.monotonic() - start
    g.kill()
    print(gevent_patched(), event_type().__module__, len(ticks) - before, round(took, 3))
""")


def test_hashing_runs_off_the_event_loop():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    patched, event_module, ticks, took = out[0], out[1], int(out[2]), float(out[3])
    assert patched == "True" and event_module.startswith("gevent")
    # scrypt takes tens of milliseconds; the ticker must have run meanwhile.
    assert took > 0.02
    assert ticks >= 3, (ticks, took)


def test_plain_threads_outside_gevent():
    from chat.concurrency import event_type, gevent_patched, off_loop

    assert not gevent_patched()
    assert event_type().__module__ == "threading"
    assert off_loop(pow, 2, 10) == 1024
