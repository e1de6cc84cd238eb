"""Left-right mirror images of an environment's observations and actions, for symmetric bodies.

A body that is its own mirror image (osim-rl's L2M2019Env: two identical legs) has, for every
transition ``(s, a, r, s')``, a mirrored one ``(m(s), m(a), r, m(s'))`` that the simulator would
produce as well: the right leg doing what the left did, in the mirrored world. Storing both in the
replay memory doubles what each simulator step teaches, and pushes the policy towards a symmetric
gait (Kidzinski et al., "Learning to Run challenge solutions", arXiv:1804.00361, where several
entrants mirrored their data; agents/replay.py stores the copies).

:func:`mirror_for` gives the :class:`Mirror` of a registered environment name, or None when the
environment has none. A Mirror is an index and a sign per observation value and an index per
action value: ``m(x)[j] = sign[j] * x[index[j]]``; applied twice it is the identity. Numpy only.

L2M2019Env (osim-rl 3.0.11, ``L2M2019Env.get_observation``; 339 values, 22 actions):

- 0-241: the target velocity field, shape (2, 11, 11): (forward, lateral) components over a grid
  of (forward, lateral) positions around the pelvis, lateral ascending. Mirrored: the lateral
  positions reversed and the lateral component negated.
- 242-250: pelvis height, pitch, roll, forward, lateral and upward velocity, pitch, roll and yaw
  rates. Mirrored: roll, lateral velocity, roll rate and yaw rate negated.
- 251-294 and 295-338: the right and the left leg, each in its own side's convention (lateral
  ground force outwards, hip abduction positive): mirrored, the two blocks swap.
- actions 0-10 and 11-21: the right and the left leg's 11 muscles in the same order: they swap.
"""
import numpy as np


class Mirror(object):
    def __init__(self, obs_index, obs_sign, act_index):
        self.obs_index = np.asarray(obs_index, dtype=np.int64)
        self.obs_sign = np.asarray(obs_sign, dtype=np.float32)
        self.act_index = np.asarray(act_index, dtype=np.int64)

    def observations(self, rows):
        """Mirrored rows of observations (n, obs_dim)."""
        return np.asarray(rows)[:, self.obs_index] * self.obs_sign

    def actions(self, rows):
        """Mirrored rows of actions (n, act_dim)."""
        return np.asarray(rows)[:, self.act_index]


def _l2m2019():
    field = np.arange(242).reshape(2, 11, 11)[:, :, ::-1]
    field_sign = np.ones((2, 11, 11))
    field_sign[1] = -1.0
    pelvis = np.arange(242, 251)
    pelvis_sign = np.array([1, 1, -1, 1, -1, 1, 1, -1, -1], dtype=float)
    legs = np.concatenate([np.arange(295, 339), np.arange(251, 295)])
    obs_index = np.concatenate([field.ravel(), pelvis, legs])
    obs_sign = np.concatenate([field_sign.ravel(), pelvis_sign, np.ones(88)])
    act_index = np.concatenate([np.arange(11, 22), np.arange(11)])
    return Mirror(obs_index, obs_sign, act_index)


MIRRORS = {'L2M2019Env': _l2m2019}


def mirror_for(name):
    """The :class:`Mirror` of the environment registered as ``name``; None if it has none."""
    make = MIRRORS.get(name)
    return make() if make else None
