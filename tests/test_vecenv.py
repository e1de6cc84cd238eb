"""vecenv.py: why an episode ended (end_reason), and --sim reaching the environments' kwargs."""
from dataclasses import dataclass, field

import pytest

import runconfig
from vecenv import END_REASONS, end_reason


@pytest.mark.parametrize('terminated, info, reason', [
    (True, {}, 'terminated'),
    (True, {'lost': 'x', 'lost_cause': 'farm'}, 'terminated'),
    (False, {}, 'time_limit'),
    (False, {'lost': 'worker died'}, 'worker_lost'),
    (False, {'lost': 'farm down', 'lost_cause': 'farm'}, 'farm_lost'),
    (False, {'lost': 'no such lease', 'lost_cause': 'lease'}, 'lease_expired'),
    (False, {'moved': 'a -> b'}, 'moved'),
    (False, {'truncated_reason': 'diverged'}, 'diverged'),
    (False, {'truncated_reason': 'step budget'}, 'step_budget')])
def test_end_reason_names_every_way_an_episode_ends(terminated, info, reason):
    assert end_reason(terminated, info) == reason and reason in END_REASONS


@dataclass
class _Cfg:
    sim: str = 'default'
    env_kwargs: dict = field(default_factory=dict)


def test_sim_reaches_the_env_kwargs_unless_they_name_one():
    assert runconfig.apply_sim(_Cfg()).env_kwargs == {}  # default: nothing for non-osim envs
    assert runconfig.apply_sim(_Cfg('fast')).env_kwargs == {'sim': 'fast'}
    assert runconfig.apply_sim(_Cfg('fast', {'sim': 'exact'})).env_kwargs == {'sim': 'exact'}
