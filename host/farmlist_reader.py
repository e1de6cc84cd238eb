"""The farm list: which farms this learner uses and how many environments to take from each.

- :func:`parse_farms` checks ``(host, capacity[, port])`` entries and returns
  ``[(host, capacity, port)]`` (port default ``settings.DEFAULT_PORT``); a bad list raises
  :class:`errors.FarmListError`, one line naming the file, the entry (from 1) and what to write.
  The same farm listed twice (``localhost`` and ``127.0.0.1`` are one machine) is refused.
- :func:`read_farmlist` imports the user's ``farmlist.py`` (any failure in it, a syntax error
  included, is a FarmListError) and parses its ``farmlist_base``.
- :func:`farms_of_flag` / :func:`check_farms_flag`: the train scripts' ``--farms``:
  ``host:capacity[:port],...``, or ``rendezvous:DIR`` (the farms announced there,
  host/rendezvous.py), or empty for farmlist.py.

Python 3.6 compatible; no Pyro4 here.
"""
import importlib

from common.errors import FarmListError
from host import rendezvous, settings

EXAMPLE_ENTRY = "('192.168.1.33', 8) or ('192.168.1.33', 8, 20100)"


def _whole(value):
    """``value`` as an int if it is a whole number (an int, or digits in a string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip('-').isdigit():
        return int(value.strip())
    return None


def parse_farms(entries, where='farmlist.py'):
    """``[(host, capacity, port)]`` from ``(host, capacity[, port])`` entries, checked; a bad list
    raises :class:`errors.FarmListError` naming ``where``, the entry (from 1) and what to write."""
    if isinstance(entries, (str, bytes)) or not isinstance(entries, (list, tuple)):
        raise FarmListError('%s: farmlist_base must be a list of (host, capacity[, port]) '
                            'entries, e.g. [%s]; got %r' % (where, EXAMPLE_ENTRY, entries))
    if not entries:
        raise FarmListError("%s lists no farm: add one, e.g. farmlist_base = [('127.0.0.1', 4)] "
                            "for a local farm of 4 environments" % where)
    farms, seen = [], {}
    for k, entry in enumerate(entries, 1):
        def bad(what):
            return FarmListError('%s, entry %d %r: %s; write (host, capacity[, port]), e.g. %s'
                                 % (where, k, entry, what, EXAMPLE_ENTRY))
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
            raise bad('expected 2 or 3 values')
        host = entry[0]
        if not isinstance(host, str) or not host.strip() or ' ' in host.strip():
            raise bad('the host must be a machine name or address, in quotes')
        host = host.strip()
        capacity = _whole(entry[1])
        if capacity is None or capacity < 1:
            raise bad('the capacity must be a whole number of environments, 1 or more')
        port = _whole(entry[2]) if len(entry) == 3 else settings.DEFAULT_PORT
        if port is None or not 1 <= port <= 65535:
            raise bad('the port must be a whole number from 1 to 65535')
        same = ('127.0.0.1' if host.lower() in settings.LOCAL_HOSTS else host.lower(), port)
        if same in seen:
            raise FarmListError('%s, entry %d %r: the same farm (%s:%d) as entry %d; list each '
                                'farm once, with the number of environments to take from it'
                                % (where, k, entry, host, port, seen[same]))
        seen[same] = k
        farms.append((host, capacity, port))
    return farms


def read_farmlist(module='farmlist'):
    """The farms of ``<module>.farmlist_base`` (see :func:`parse_farms`)."""
    try:
        loaded = importlib.import_module(module)
    except SyntaxError as e:
        raise FarmListError('%s line %s: %s; fix the farm list (entries are (host, capacity'
                            '[, port]))' % (e.filename or module + '.py', e.lineno, e.msg))
    except ImportError as e:
        raise FarmListError('cannot read the farm list %s.py: %s (it sits next to farmer.py)'
                            % (module, e))
    except Exception as e:  # the file is Python: anything may go wrong in it
        raise FarmListError('%s.py fails when read: %s: %s' % (module, type(e).__name__, e))
    where = getattr(loaded, '__file__', None) or module + '.py'
    if not hasattr(loaded, 'farmlist_base'):
        raise FarmListError('%s defines no farmlist_base; add e.g. farmlist_base = [%s]'
                            % (where, EXAMPLE_ENTRY.split(' or ')[0]))
    return parse_farms(loaded.farmlist_base, where)


def farms_of_flag(farms):
    """``[(host, capacity[, port])]`` from ``--farms host:capacity[:port],...`` (unchecked), or
    the farms announced in DIR for ``--farms rendezvous:DIR``."""
    if farms.startswith(rendezvous.SCHEME):
        return rendezvous.farms_in(farms[len(rendezvous.SCHEME):])
    return [tuple(part.strip().split(':')) for part in farms.split(',') if part.strip()]


def check_farms_flag(farms):
    """Check the farm list a run will use before any farm starts: ``--farms`` or, when empty,
    farmlist.py. A rendezvous directory must exist; its farms may still be starting."""
    if farms.startswith(rendezvous.SCHEME):
        rendezvous.check_directory(farms[len(rendezvous.SCHEME):])
    elif farms:
        parse_farms(farms_of_flag(farms), '--farms')
    else:
        read_farmlist()
