"""The farms this learner uses: edit this file (it is yours, not the code's).

Each entry is ``(host, capacity)`` or ``(host, capacity, port)``: the machine's name or address
in quotes, how many environments to take from that farm (1 or more), and its port (default
20099). List each farm once. ``python farmer.py`` checks this list, says in one line what is wrong
with an entry, and prints which farms answer. Start ``python farm.py`` on every machine listed.
When only this machine is listed and no farm answers, the farmer starts a local farm itself and
stops it on exit.

Farms listening beyond loopback require a shared key: start them with ``--key SECRET`` (or
``FARM_KEY=SECRET``) and export ``FARM_KEY=SECRET`` here too. The key is read from the
environment, never from this file: keys are never committed. Farms started with
``--tls-cert/--tls-key`` need ``FARM_TLS_CA=<their CA certificate>`` here (then every farm of this
learner must use TLS).

Farms started with ``farm.py --port 0 --rendezvous DIR`` announce themselves in DIR (a directory
both sides see): the train scripts take them with ``--farms rendezvous:DIR`` instead of this
list, and ``python farmer.py wait DIR --count K`` waits until K have.
"""
import os

# One environment more than the cores: the train scripts step --n-envs (the CPU count) for
# training, and test() runs on an environment of its own, idle while training runs.
farmlist_base = [('127.0.0.1', (os.cpu_count() or 1) + 1)]
# farmlist_base = [('127.0.0.1', 4), ('192.168.1.33', 8)]
# a farm of 4 cores on this machine, one of 8 on another; add a line per machine.
