"""Where Arm2DEnv's hand can be at rest: the postures its six muscles can hold still against
gravity, and how far each evaluation target is from the nearest of them.

bench/arm_reach.py searches constant activations, which only find the *stable* holds; a feedback
policy can also balance the arm where it is at rest but unstable. This finds every posture
where the arm can be at rest at all. Each posture (shoulder elevation, elbow flexion, on a grid
over the model's ranges) is set with zero speeds; for an activation vector ``a`` the muscles are
brought to equilibrium (``Model.equilibrateMuscles``) and the joints' accelerations computed.
The posture is an *equilibrium* when some ``a`` in [0, 1]^6 brings both accelerations within
``--tol`` rad/s^2 of zero: a linear program on the accelerations' response to each muscle
(Thelen muscles with compliant tendons respond to activation almost, not exactly, linearly)
gives the start of a bounded least-squares search on the model itself.

Where the arm cannot rest it may still pass through. What decides whether it can *stay* near
a place is the *lift*: the net torque about the shoulder, which is the rate of change of the whole
arm's angular momentum about the shoulder (gravity and the muscles that cross the shoulder; the
elbow's muscles only move the forearm against the upper arm). It is linear in the muscle forces,
so its most upward value is exact: every muscle that helps fully on. ``..._lengthening``
allows those muscles Thelen's most force of a lengthening muscle (Flen: 1.8 x isometric here),
the most they give in any motion. Where even that is negative, the arm's angular momentum only
falls: the arm can rise through such postures and fall back, never hover.

Per evaluation target (bench/learn.py's: reset seeds ``EVAL_SEED`` + k, as in arm_reach.py):
- ``geometric_floor_m``: the distance to the nearest posture at all (targets are drawn up to
  0.65 m from the shoulder; the arm is about 0.53 m long);
- ``static_floor_m``: the distance to the nearest equilibrium posture. A policy whose hand is at
  rest over an episode's last half scores at least this; to score less it must keep the arm
  moving where it cannot rest;
- ``nearer_max_lift_nm``, ``nearer_max_lift_lengthening_nm``: the most upward lift anywhere
  nearer the target than that floor (negative: the arm cannot stay there).

    python bench/arm_statics.py --json [--quick] [--step 0.04] [--tol 0.1] [--targets 20]
                                [--policy results/policies/sac_Arm2DEnv_root_seed0 ...]

With ``--policy DIR`` (repeatable), each target's row also has that policy's own distance, and
the policy's means: over all targets, beyond each target's static floor, and over the targets
whose static floor is within 0.05 m (where a hand at rest can meet a 0.05 m target).

Prints one JSON object; ``results/arm2d_statics.json`` is its output. A grid search: finer
steps find floors a little lower: at 0.04 rad the hand moves about 2 cm between neighbouring
postures, so a floor is an estimate from above by up to about 1 cm.
"""
import argparse
import json
import logging
import os
import platform
import sys
import time

import numpy as np
from scipy.optimize import least_squares, linprog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))

import envs  # noqa: E402
import opensim  # noqa: E402  (after envs: its osim-rl compatibility fixes come first)
from bench.arm_reach import EPISODE, check_policies, policy_distances  # noqa: E402
from bench.learn import EVAL_SEED  # noqa: E402

HAND = 'r_radius_styloid'  # the marker Arm2DEnv rewards
SHOULDER_Y = 0.8           # arm.py's targets are drawn around (0, 0.8)


class ArmStatics(object):
    """The osim-rl arm's model at rest: postures, hand positions, accelerations for activations."""

    def __init__(self, env):
        model = env
        while not hasattr(model, 'osim_model'):  # through the project's wrappers to osim-rl's env
            model = model.inner if hasattr(model, 'inner') else model.env
        self.osim = model.osim_model
        self.model = self.osim.model
        coordinates = self.model.getCoordinateSet()
        self.shoulder = coordinates.get('r_shoulder_elev')
        self.elbow = coordinates.get('r_elbow_flex')
        self.hand = self.model.getMarkerSet().get(HAND)
        muscles = self.model.getMuscles()
        self.muscles = [muscles.get(i) for i in range(muscles.getSize())]
        # Each muscle's most force when lengthening, over its isometric force (Thelen's Flen).
        self.flen = np.array([opensim.Thelen2003Muscle.safeDownCast(m).get_Flen()
                              for m in self.muscles])
        self.state = self.osim.get_state()
        s, nu = self.state, self.state.getNU()
        self._u = []  # where the shoulder's and the elbow's speeds sit in the state's u
        for coordinate in (self.shoulder, self.elbow):
            coordinate.setSpeedValue(s, 1.0)
            u = s.getU()
            self._u.append([u.get(i) for i in range(nu)].index(1.0))
            coordinate.setSpeedValue(s, 0.0)

    def ranges(self):
        return [(c.getRangeMin(), c.getRangeMax()) for c in (self.shoulder, self.elbow)]

    def pose(self, q):
        """Puts the arm at rest in posture ``q`` = (shoulder elevation, elbow flexion); returns
        the hand's (x, y)."""
        s = self.state
        for coordinate, value in zip((self.shoulder, self.elbow), q):
            coordinate.setValue(s, float(value), False)
            coordinate.setSpeedValue(s, 0.0)
        self.model.realizePosition(s)
        p = self.hand.getLocationInGround(s)
        return np.array([p[0], p[1]])

    def accel(self, activation):
        """(shoulder, elbow) accelerations, rad/s^2, at the current posture with the muscles at
        ``activation`` and in equilibrium."""
        s = self.state
        for muscle, a in zip(self.muscles, activation):
            muscle.setActivation(s, float(a))
        self.model.equilibrateMuscles(s)
        self.model.realizeAcceleration(s)
        return np.array([self.shoulder.getAccelerationValue(s),
                         self.elbow.getAccelerationValue(s)])

    def mass(self):
        """The arm's 2 x 2 block of the mass matrix at the current posture (kg m^2)."""
        s, nu = self.state, self.state.getNU()
        self.model.realizePosition(s)
        matter = self.model.getMatterSubsystem()
        block = np.zeros((2, 2))
        for j, col in enumerate(self._u):
            unit, out = opensim.Vector(nu, 0.0), opensim.Vector()
            unit.set(col, 1.0)
            matter.multiplyByM(s, unit, out)
            block[:, j] = [out.get(i) for i in self._u]
        return block

    def response(self):
        """The accelerations with every muscle off, and each muscle's change to them when fully
        on alone (columns): the linear model the programs below start from."""
        n = len(self.muscles)
        base = self.accel(np.zeros(n))
        return base, np.array([self.accel(np.eye(n)[i]) - base for i in range(n)]).T

    def rest(self, base, response):
        """The smallest |acceleration| (max over the two joints) some activation leaves at this
        posture, and that activation."""
        n = response.shape[1]
        # Least L1 residual of the linear model: variables a (n), then r+ and r- (2 each).
        lp = linprog(np.r_[np.zeros(n), np.ones(4)],
                     A_eq=np.hstack([response, np.eye(2), -np.eye(2)]), b_eq=-base,
                     bounds=[(0, 1)] * n + [(0, None)] * 4, method='highs')
        start = np.clip(lp.x[:n], 0, 1)
        fit = least_squares(self.accel, start, bounds=(0, 1), xtol=1e-8, ftol=1e-10,
                            max_nfev=60)
        return float(np.abs(fit.fun).max()), fit.x


def lift(mass, base, response, ceiling=1.0):
    """The most upward net torque about the shoulder (N m) the muscles can give at a posture at
    rest: the shoulder's row of M times the accelerations, which is the rate of change of the
    whole arm's angular momentum about the shoulder (gravity plus the muscles crossing the
    shoulder; the elbow's muscles are internal to the arm). It is linear in the muscle forces, so
    each muscle that helps is taken fully on; ``ceiling`` (one number, or one per muscle) scales
    their active force (``ArmStatics.flen``: the most a lengthening muscle gives, whatever the
    arm's motion)."""
    torque = mass[0].dot(base)
    helps = mass[0].dot(response)
    return float(torque + (ceiling * helps)[helps > 0].sum())


def survey(arm, step, tol):
    """Every grid posture: ``(q_shoulder, q_elbow, hand_x, hand_y, residual, lift at rest,
    lift at the lengthening ceiling)``."""
    (s_lo, s_hi), (e_lo, e_hi) = arm.ranges()
    rows = []
    for q1 in np.arange(s_lo, s_hi + 1e-9, step):
        for q2 in np.arange(e_lo, e_hi + 1e-9, step):
            hand = arm.pose((q1, q2))
            mass = arm.mass()
            base, response = arm.response()
            residual, _ = arm.rest(base, response)
            rows.append((q1, q2, hand[0], hand[1], residual, lift(mass, base, response),
                         lift(mass, base, response, arm.flen)))
    return np.array(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='print the one JSON object (default)')
    parser.add_argument('--step', type=float, default=0.04, help='grid step, rad')
    parser.add_argument('--tol', type=float, default=0.1,
                        help='rad/s^2: a posture is at rest when both accelerations are below it')
    parser.add_argument('--targets', type=int, default=20,
                        help='bench/learn.py evaluation targets (its default: 20)')
    parser.add_argument('--policy', action='append', default=[], metavar='DIR',
                        help='an exported policy (or run) to score on the same targets, as '
                        'evaluate.py does (bench/arm_reach.py\'s scoring); repeatable')
    parser.add_argument('--quick', action='store_true', help='a smoke run: step 0.4, 2 targets')
    args = parser.parse_args(argv)
    if args.quick:
        args.step, args.targets = 0.4, 2
    if not 0 < args.step <= 1 or args.tol <= 0 or args.targets < 1:
        parser.error('--step must be in (0, 1] rad, --tol > 0, --targets >= 1')
    logging.basicConfig(level=logging.WARNING)
    check_policies(args.policy, 'bench/arm_statics.py')
    start = time.time()
    env = envs.make('Arm2DEnv', sim='fast')
    try:
        targets = [np.asarray(env.reset(seed=EVAL_SEED + k), dtype=float)[:2]
                   for k in range(args.targets)]
        arm = ArmStatics(env)
        grid = survey(arm, args.step, args.tol)
    finally:
        env.close()
    at_rest = grid[:, 4] < args.tol
    rows = []
    for target in targets:
        distance = np.linalg.norm(grid[:, 2:4] - target, axis=1)
        static = float(distance[at_rest].min()) if at_rest.any() else float('nan')
        nearer = (distance < static) & ~at_rest
        rows.append({'target': [round(float(v), 4) for v in target],
                     'angle_deg': round(float(np.degrees(np.arctan2(SHOULDER_Y - target[1],
                                                                    target[0]))), 1),
                     'radius_m': round(float(np.hypot(target[0], target[1] - SHOULDER_Y)), 4),
                     'geometric_floor_m': round(float(distance.min()), 4),
                     'static_floor_m': round(static, 4),
                     'nearer_postures': int(nearer.sum()),
                     'nearer_max_lift_nm': (round(float(grid[nearer, 5].max()), 2)
                                            if nearer.any() else None),
                     'nearer_max_lift_lengthening_nm': (round(float(grid[nearer, 6].max()), 2)
                                                        if nearer.any() else None)})
    near = [r for r in rows if r['angle_deg'] <= 25]
    policies = {}
    for path in args.policy:
        scored = policy_distances(path, len(targets))
        restable = [d for d, r in zip(scored, rows) if r['static_floor_m'] <= 0.05]
        policies[path] = {
            'mean_distance_m': round(float(np.mean(scored)), 4),
            'mean_beyond_static_floor_m': round(float(np.mean(
                [d - r['static_floor_m'] for d, r in zip(scored, rows)])), 4),
            'mean_distance_where_rest_within_5cm_m': (round(float(np.mean(restable)), 4)
                                                      if restable else None)}
        for row, d in zip(rows, scored):
            row.setdefault('policy_distance_m', {})[path] = round(d, 4)

    def mean(key, which):
        return round(float(np.mean([r[key] for r in which])), 4) if which else None
    result = {'policies': policies, 'env': 'Arm2DEnv', 'sim': 'fast', 'eval_seed': EVAL_SEED,
              'step_rad': args.step, 'tol_rad_s2': args.tol, 'postures': int(len(grid)),
              'postures_at_rest': int(at_rest.sum()), 'targets': rows,
              'mean_geometric_floor_m': mean('geometric_floor_m', rows),
              'mean_static_floor_m': mean('static_floor_m', rows),
              'near_horizontal_targets': len(near),
              'near_horizontal_mean_static_floor_m': mean('static_floor_m', near),
              'targets_static_floor_beyond_5cm': int(sum(r['static_floor_m'] > 0.05
                                                         for r in rows)),
              'mean_static_floor_where_within_5cm_m': mean(
                  'static_floor_m', [r for r in rows if r['static_floor_m'] <= 0.05]),
              # The return (1 - d^2 per simulator step) of a hand at its static floor for the
              # whole episode: one that rests must reach first from the reset pose, so earns
              # less; only one that keeps the arm swinging nearer than the floor could earn more.
              'return_bound_at_rest': round(EPISODE * (1 - float(np.mean(
                  [r['static_floor_m'] ** 2 for r in rows]))), 2),
              'wall_s': round(time.time() - start, 1), 'python': platform.python_version(),
              'command': ' '.join(['bench/arm_statics.py'] + list(
                  sys.argv[1:] if argv is None else argv))}
    print(json.dumps(result, sort_keys=True))


if __name__ == '__main__':
    main()
