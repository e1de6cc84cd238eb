"""The farms that announced themselves in a rendezvous directory (``farm.py --rendezvous DIR``).

A farm writes one JSON file there while it serves (farmside/rendezvous.py writes it whole and
removes it on a clean exit): ``address``, ``port``, ``capacity``, ``protocol``, ``pid``,
``hostname``. This side reads them:

- :func:`announced`: the records found now, newest file per address and port, in name order;
  a file that is not a farm's record is skipped with one warning naming it.
- :func:`farms_in`: ``[(address, capacity, port)]`` for the farm list (``--farms
  rendezvous:DIR``); a missing directory or one with no farm is a :class:`FarmListError`.
- :func:`wait_for`: wait until ``count`` farms have announced themselves, calling back once per
  farm as it arrives; on the deadline a :class:`FarmListError` says how many came and which
  expected hosts did not.

Python 3.6 compatible; no Pyro4 here.
"""
import json
import logging
import os
import time

from common import protocol
from common.errors import FarmListError

log = logging.getLogger('farmer')

SCHEME = 'rendezvous:'


def check_directory(directory):
    if not os.path.isdir(directory):
        raise FarmListError('rendezvous %s: no such directory (farms create nothing there until '
                            'started with farm.py --rendezvous %s)' % (directory, directory))


def announced(directory):
    """The farm records in ``directory`` now (see the module docstring)."""
    check_directory(directory)
    records = {}
    for name in sorted(os.listdir(directory)):
        if not (name.startswith(protocol.RENDEZVOUS_PREFIX)
                and name.endswith(protocol.RENDEZVOUS_SUFFIX)):
            continue  # temporary files of a farm writing its record, and anything else
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                record = json.load(f)
            fields = protocol.RENDEZVOUS_FIELDS
            if not (isinstance(record, dict) and all(k in record for k in fields)):
                raise ValueError('fields %s expected' % ', '.join(fields))
        except FileNotFoundError:  # the farm stopped while we listed
            continue
        except (OSError, ValueError) as e:
            log.warning('rendezvous %s: not a farm record, skipped (%s)', path, e)
            continue
        record['file'] = path
        records[(record['address'], int(record['port']))] = record
    return [records[key] for key in sorted(records)]


def farms_in(directory):
    """``[(address, capacity, port)]`` of the farms announced in ``directory``."""
    records = announced(directory)
    if not records:
        raise FarmListError('rendezvous %s: no farm has announced itself there yet (start '
                            'farm.py --rendezvous %s, or wait for them: python farmer.py wait '
                            '%s --count K)' % (directory, directory, directory))
    return [(r['address'], int(r['capacity']), int(r['port'])) for r in records]


def describe(record):
    """One line for a farm that announced itself."""
    text = 'farm %s:%d on %s (pid %s): %d environment(s)' % (
        record['address'], record['port'], record.get('node') or record['hostname'], record['pid'],
        record['capacity'])
    if record['protocol'] != protocol.PROTOCOL:
        text += ', farm protocol %s where this learner speaks %s: it will not be used' % (
            record['protocol'], protocol.PROTOCOL)
    return text


def wait_for(directory, count, timeout, arrived=None, hosts=(), every=0.2):
    """The records once ``count`` farms have announced themselves in ``directory``; calls
    ``arrived(record)`` once per farm as it appears. Raises FarmListError after ``timeout``
    seconds, naming which of ``hosts`` (expected host names) have not announced a farm."""
    if count < 1:
        raise FarmListError('--count %d: wait for at least 1 farm' % count)
    check_directory(directory)
    deadline = time.time() + timeout
    seen = {}
    while True:
        for record in announced(directory):
            key = (record['address'], record['port'])
            if key not in seen:
                seen[key] = record
                if arrived is not None:
                    arrived(record)
        if len(seen) >= count:
            return list(seen.values())
        if time.time() >= deadline:
            break
        time.sleep(every)
    came = {r['hostname'] for r in seen.values()} | {r.get('node') for r in seen.values()}
    missing = [h for h in hosts if h not in came and h.split('.')[0] not in came]
    raise FarmListError('%d of %d farms announced themselves in %s within %g s%s' % (
        len(seen), count, directory, timeout,
        '; none from %s' % ', '.join(missing) if missing else ''))
