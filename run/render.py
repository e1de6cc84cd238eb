"""run/render.py: pictures of an environment's current state without a display, and the video files
they go to.

A frame is a numpy ``uint8`` array of shape ``(height, width, 3)``.

- gym/gymnasium ids draw themselves: build them with ``render_mode='rgb_array'``
  (:func:`video_kwargs` adds it) and :class:`Renderer` calls their ``render()``.
- osim-rl models are drawn here from the simulation's state, with matplotlib's Agg backend (no
  display, no OpenGL; OpenSim's own visualizer needs both). :func:`osim_scene` reads a live
  osim-rl environment into a *scene* of plain data, :func:`draw_scene` draws a scene. The split
  keeps the drawing testable from plain data, and the one place that knows OpenSim's API small.
  A side view (x: forward, y: up), the plane both osim-rl tasks move in:

  - bodies: their origins (``get_state_desc()['body_pos']``), joined parent to child as the
    model's joints join them; a leaf body (the forearm) is drawn out to its markers;
  - muscles: their current path points from OpenSim (origin, via points, insertion), coloured
    by activation from blue (0) to red (1);
  - Arm2DEnv's target as a red ring; L2M2019Env's head as a disc, its ground as a line marked
    every 0.5 m, and the view following its pelvis.

- :class:`VideoWriter`: frames to MP4 (H.264, by the ffmpeg binary the imageio-ffmpeg wheel
  ships: nothing to install system-wide) and to a GIF (Pillow), one frame at a time.

Why in-process and not on a farm: a 480 x 480 frame is 691 KB, about 500 times a 339-float
observation, and the farm's wire is sized and tested for steps; a video is a few episodes of one
environment, which one process steps fast enough. So evaluate.py builds its environment with
``envs.make`` here, as ``vecenv.InProcessVecEnv`` does.

Host side, Python 3.6 compatible. matplotlib, imageio and Pillow are imported when first used.
"""
import math
import os

import numpy as np

from common import errors

SIZE = 480          # pixels, square: divisible by 16, what H.264 encoders prefer
GROUND_MARKS = 0.5  # metres between the marks on L2M's ground: the eye sees the walker advance
ARM_VIEW = ((0.0, 0.7), 1.5)     # Arm2DEnv: centre and span of the fixed view (the arm's reach)
WALK_VIEW = (0.9, 2.2)           # walkers: height of the view's centre and its span, in metres


class RenderError(errors.UserError):
    """An environment that cannot be pictured here, or a video that cannot be written (a
    package missing): one line for the user, like every errors.UserError."""


# --- which object draws --------------------------------------------------------------------------
def video_kwargs(env_name, env_kwargs):
    """``env_kwargs`` as they must be for frames of ``env_name``: a gym id needs
    ``render_mode='rgb_array'`` at construction (it cannot be set later); osim-rl and the
    project's envs take them unchanged."""
    from envs import gym_ids  # the farm side's module, imported in-process as InProcessVecEnv does
    _headless()
    kwargs = dict(env_kwargs or {})
    if gym_ids.known(env_name):
        kwargs.setdefault('render_mode', 'rgb_array')
    return kwargs


def _headless():
    """gym's classic-control envs draw with pygame, whose SDL looks for a display at its first
    render and says "XDG_RUNTIME_DIR is invalid" on stderr without one. SDL's own dummy driver
    is what rgb_array needs: no window is ever opened."""
    os.environ.setdefault('SDL_VIDEODRIVER', 'dummy')


def simulation(adapter):
    """The third-party environment inside an adapter of ``envs.make`` (through its wrappers):
    the gym env or the osim-rl env; the adapter itself for the project's own envs."""
    inner = adapter
    while hasattr(inner, 'inner'):
        inner = inner.inner
    return getattr(inner, 'env', inner)


def is_osim(env):
    return hasattr(env, 'osim_model') and hasattr(env, 'get_state_desc')


class Renderer(object):
    """``frame(caption='')``: the current state of one environment built by ``envs.make``."""

    def __init__(self, adapter, size=SIZE):
        self.name = getattr(adapter, 'name', '?')
        self.env = simulation(adapter)
        self.size = int(size)
        self._canvas = self._skeleton = None
        if is_osim(self.env):
            return
        _headless()
        if getattr(self.env, 'render_mode', None) != 'rgb_array':
            if hasattr(self.env, 'render_mode'):
                raise RenderError('%s was built without render_mode=\'rgb_array\' (see '
                                  'render.video_kwargs)' % self.name)
            raise RenderError('%s cannot be pictured: only gym/gymnasium ids and osim-rl '
                              'environments draw themselves' % self.name)

    def frame(self, caption=''):
        if is_osim(self.env):
            if self._canvas is None:  # built once: the model's shape never changes
                self._canvas = Canvas(self.size)
                self._skeleton = skeleton(self.env.osim_model.model)
            return self._canvas.draw(osim_scene(self.env, self._skeleton), caption)
        try:
            frame = np.asarray(self.env.render())
        except Exception as e:  # gym(nasium)'s DependencyNotInstalled: pygame, for classic control
            if type(e).__name__ != 'DependencyNotInstalled' and not isinstance(e, ImportError):
                raise
            raise RenderError('%s cannot draw itself here: %s' % (self.name, e))
        if frame.dtype != np.uint8 or frame.ndim != 3:
            raise RenderError('%s rendered %s %s, not an RGB image' % (
                self.name, frame.dtype, frame.shape))
        return frame[..., :3]


# --- osim-rl: the state as a scene of plain data -------------------------------------------------
def osim_scene(env, bones=None):
    """A scene (see :func:`draw_scene`) of an osim-rl environment's current state;
    ``bones``: its model's :func:`skeleton`, when known already."""
    model, state = env.osim_model.model, env.osim_model.state
    desc = env.get_state_desc()
    links, markers = bones or skeleton(model)
    points = dict((name, pos[:2]) for name, pos in desc['body_pos'].items()
                  if name != 'target')
    for name, marker in desc.get('markers', {}).items():
        if name in markers:
            points[name] = marker['pos'][:2]
    model.realizePosition(state)  # a no-op when osim-rl has realized it (it realizes further)
    muscles = []
    for i in range(model.getMuscles().getSize()):
        muscle = model.getMuscles().get(i)
        path = muscle.getGeometryPath().getCurrentPath(state)
        xy = []
        for j in range(path.getSize()):
            where = path.get(j).getLocationInGround(state)
            xy.append([where.get(0), where.get(1)])
        activation = desc['muscles'].get(muscle.getName(), {}).get('activation', 0.0)
        muscles.append([muscle.getName(), float(activation), xy])
    scene = {'points': points, 'links': links, 'muscles': muscles}
    if hasattr(env, 'target_x'):  # Arm2DEnv: its target is two numbers on the env
        scene['target'] = [float(env.target_x), float(env.target_y)]
    if 'pelvis' in points:  # a walker: a floor, and a view that goes with it
        scene['ground'] = 0.0
        scene['view'] = [[points['pelvis'][0], WALK_VIEW[0]], WALK_VIEW[1]]
    else:
        scene['view'] = [list(ARM_VIEW[0]), ARM_VIEW[1]]
    return scene


def skeleton(model):
    """``(links, markers)`` of an OpenSim model: the pairs of points to join (each joint's
    parent and child bodies, not the ground, not Arm2DEnv's target; a leaf body to its markers,
    the hand's end) and the markers drawn."""
    links, parents = [], set()
    joints = model.getJointSet()
    for i in range(joints.getSize()):
        joint = joints.get(i)
        parent = joint.getParentFrame().findBaseFrame().getName()
        child = joint.getChildFrame().findBaseFrame().getName()
        if parent != 'ground' and 'target' not in (parent, child):
            links.append([parent, child])
            parents.add(parent)
    markers = set()
    marker_set = model.getMarkerSet()
    for i in range(marker_set.getSize()):
        marker = marker_set.get(i)
        body = marker.getParentFrame().findBaseFrame().getName()
        if body not in parents and body not in ('ground', 'target'):
            links.append([body, marker.getName()])
            markers.add(marker.getName())
    return links, markers


# --- drawing a scene -----------------------------------------------------------------------------
def draw_scene(scene, size=SIZE, caption=''):
    """A frame of ``scene``, a dict of plain data (metres, side view):

    - ``points``: ``{name: [x, y]}``; ``links``: ``[[name, name], ...]`` drawn as bones;
    - ``muscles``: ``[[name, activation in [0, 1], [[x, y], ...]], ...]``, path points in order;
    - ``view``: ``[[x, y], span]``, the square shown; optional ``target`` ``[x, y]`` and
      ``ground`` (its height).
    """
    return Canvas(size).draw(scene, caption)


class Canvas(object):
    """One matplotlib figure, reused frame after frame (building one costs more than drawing)."""

    def __init__(self, size=SIZE):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        dpi = 100
        self.figure = Figure(figsize=(size / float(dpi), size / float(dpi)), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.add_axes([0, 0, 1, 1])

    def draw(self, scene, caption=''):
        from matplotlib.collections import LineCollection
        ax = self.axes
        ax.clear()
        (cx, cy), span = scene['view']
        ax.set_xlim(cx - span / 2.0, cx + span / 2.0)
        ax.set_ylim(cy - span / 2.0, cy + span / 2.0)
        ax.set_aspect('equal')
        ax.axis('off')
        if scene.get('ground') is not None:
            self._ground(ax, scene['ground'], cx - span / 2.0, cx + span / 2.0)
        points = scene['points']
        links = sorted([(a, b) for a, b in scene['links'] if a in points and b in points],
                       key=lambda link: not link[1].endswith('_l'))
        # In a side view the left leg hides behind the right: drawn lighter, and first.
        ax.add_collection(LineCollection(
            [[points[a], points[b]] for a, b in links], linewidths=4, capstyle='round',
            colors=['0.65' if b.endswith('_l') else '0.2' for a, b in links], zorder=2))
        muscles = [(min(max(a, 0.0), 1.0), path) for _, a, path in scene['muscles']
                   if len(path) >= 2]
        ax.add_collection(LineCollection(
            [path for _, path in muscles], colors=[activation_colour(a) for a, _ in muscles],
            linewidths=[1.2 + 2.3 * a for a, _ in muscles], alpha=0.85, zorder=3))
        if points:
            xy = np.asarray(list(points.values()), dtype=float)
            ax.scatter(xy[:, 0], xy[:, 1], s=25, c='0.1', zorder=4)
        if 'head' in points:
            ax.add_patch(_circle(points['head'], 0.09, facecolor='0.2', edgecolor='0.2'))
        if scene.get('target') is not None:
            ax.add_patch(_circle(scene['target'], 0.035, facecolor=(1.0, 0.85, 0.85),
                                 edgecolor='red', linewidth=2.5))
        ax.text(0.02, 0.98, caption, transform=ax.transAxes, va='top', ha='left', fontsize=11,
                family='monospace')
        ax.text(0.98, 0.92, 'muscle activation: blue 0, red 1', transform=ax.transAxes,
                va='top', ha='right', fontsize=8, color='0.4')
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    @staticmethod
    def _ground(ax, height, left, right):
        ax.axhline(height, color='0.3', linewidth=1.5, zorder=1)
        ax.axhspan(height - 10.0, height, color='0.9', zorder=0)
        first = math.ceil(left / GROUND_MARKS) * GROUND_MARKS
        for x in np.arange(first, right, GROUND_MARKS):
            ax.plot([x, x], [height, height - 0.05], color='0.3', linewidth=1, zorder=1)
            if abs(x - round(x)) < 1e-6:
                ax.text(x, height - 0.07, '%d m' % round(x), ha='center', va='top', fontsize=8,
                        color='0.3')


def activation_colour(activation):
    """Blue at 0, red at 1, through purple: every level stands out on white (a diverging map's
    white middle would hide a muscle at 0.5)."""
    return (0.15 + 0.8 * activation, 0.15, 0.95 - 0.8 * activation)


def _circle(centre, radius, **style):
    from matplotlib.patches import Circle
    return Circle(centre, radius, zorder=1, **style)


# --- files ---------------------------------------------------------------------------------------
class VideoWriter(object):
    """Frames appended one at a time to an MP4 (``mp4``) and/or a GIF (``gif``).

    The MP4 streams to ffmpeg (nothing is held in memory); the GIF keeps every ``gif_every``-th
    frame at ``gif_scale`` of its size (a README picture, not an archive) and is written at
    :meth:`close`. Use as a context manager.
    """

    def __init__(self, mp4=None, gif=None, fps=30, gif_every=2, gif_scale=0.5):
        self.mp4, self.gif, self.fps = mp4, gif, float(fps)
        self.gif_every, self.gif_scale = max(1, int(gif_every)), float(gif_scale)
        self.frames = 0
        self._mp4 = None
        self._gif = []

    def append(self, frame):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise RenderError('a frame is uint8 (height, width, 3); got %s %s'
                              % (frame.dtype, frame.shape))
        if self.mp4:
            if self._mp4 is None:
                self._mp4 = _mp4_writer(self.mp4, self.fps)
            self._mp4.append_data(_even(frame))
        if self.gif and self.frames % self.gif_every == 0:
            from PIL import Image
            picture = Image.fromarray(frame)
            if self.gif_scale != 1.0:
                picture = picture.resize((max(1, int(frame.shape[1] * self.gif_scale)),
                                          max(1, int(frame.shape[0] * self.gif_scale))))
            self._gif.append(picture)
        self.frames += 1

    def close(self):
        if self._mp4 is not None:
            self._mp4.close()
            self._mp4 = None
        if self.gif and self._gif:
            self._gif[0].save(self.gif, save_all=True, append_images=self._gif[1:], loop=0,
                              duration=int(round(1000.0 * self.gif_every / self.fps)))
            self._gif = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _mp4_writer(path, fps):
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary; imageio alone has none)
    except ImportError as e:
        raise RenderError('writing MP4 needs imageio and imageio-ffmpeg (%s): pip install '
                          'imageio imageio-ffmpeg, or ./setup.sh' % e)
    # macro_block_size=1: frames go in at their own size (made even by _even), not rescaled.
    return imageio.get_writer(path, fps=fps, codec='libx264', pixelformat='yuv420p',
                              macro_block_size=1, ffmpeg_log_level='error')


def _even(frame):
    """yuv420p halves the colour planes: odd sizes are padded by one white row or column."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
    return frame
