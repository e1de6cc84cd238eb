"""run/render.py: frames without a display (osim-rl models drawn from their state, gym ids through
rgb_array) and the MP4/GIF files they go to, read back with imageio and Pillow."""
import importlib
import sys

import numpy as np
import pytest

import envs
from common import errors
from run import render


def osim_missing():
    try:
        importlib.import_module('opensim')
        importlib.import_module('osim.env')
    except ImportError as e:
        return str(e)
    return None


needs_osim = pytest.mark.skipif(osim_missing() is not None,
                                reason='opensim/osim-rl not installed: %s' % osim_missing())
WHITE = 255


def ink(frame):
    """How many pixels are not white."""
    return int((frame != WHITE).any(axis=2).sum())


def scene(activation=0.0, elbow=(0.3, 0.5)):
    return {'points': {'shoulder': [0.0, 0.8], 'elbow': list(elbow), 'hand': [0.3, 0.2]},
            'links': [['shoulder', 'elbow'], ['elbow', 'hand']],
            'muscles': [['biceps', activation, [[0.02, 0.78], [0.32, 0.48], [0.31, 0.3]]]],
            'target': [-0.3, 0.4], 'view': [[0.0, 0.5], 1.5]}


def test_a_scene_of_plain_data_is_drawn_as_an_rgb_image():
    frame = render.draw_scene(scene(), size=240)
    assert frame.dtype == np.uint8 and frame.shape == (240, 240, 3)
    assert ink(frame) > 500
    moved = render.draw_scene(scene(elbow=(-0.2, 0.5)), size=240)
    assert (moved != frame).any(axis=2).sum() > 200


def test_muscles_turn_from_blue_to_red_with_activation():
    def reds_minus_blues(frame):
        pixels = frame.reshape(-1, 3).astype(int)
        return int((pixels[:, 0] - pixels[:, 2] > 100).sum() - (pixels[:, 2] - pixels[:, 0] > 100)
                   .sum())
    resting, active = [render.draw_scene(scene(activation=a), size=240) for a in (0.0, 1.0)]
    assert reds_minus_blues(active) > reds_minus_blues(resting) + 50


@needs_osim
@pytest.mark.parametrize('name,muscles,ground,bone', [
    ('Arm2DEnv', 6, False, ['r_ulna_radius_hand', 'r_radius_styloid']),  # the forearm, to a marker
    ('L2M2019Env', 22, True, ['femur_r', 'tibia_r'])])                    # a thigh, hip to knee
def test_an_osim_model_is_drawn_from_its_state_and_the_frame_follows_the_state(name, muscles,
                                                                              ground, bone):
    env = envs.make(name, seed=1)
    try:
        env.reset()
        drawn = render.osim_scene(render.simulation(env))
        assert len(drawn['muscles']) == muscles
        assert all(len(path) >= 2 for _, _, path in drawn['muscles'])  # origin to insertion
        assert ('ground' in drawn) == ground and ('target' in drawn) != ground
        assert bone in drawn['links'] and all(end in drawn['points'] for end in bone)
        assert not any('ground' in link or 'target' in link for link in drawn['links'])
        renderer = render.Renderer(env, size=320)
        first = renderer.frame('start')
        assert first.dtype == np.uint8 and first.shape == (320, 320, 3)
        assert ink(first) > 1000
        for _ in range(10):  # every muscle fully on: the body moves, the muscles go red
            env.step([1.0] * env.action_space['shape'][0])
        later = renderer.frame('start')
        assert (later != first).any(axis=2).sum() > 200
    finally:
        env.close()


def frames_of(name, n, **kwargs):
    env = envs.make(name, seed=2, **render.video_kwargs(name, kwargs))
    try:
        env.reset()
        renderer = render.Renderer(env, size=160)
        frames = [renderer.frame()]
        rng = np.random.RandomState(0)
        low, high = env.action_space['low'], env.action_space['high']
        while len(frames) < n:
            env.step(rng.uniform(low, high).tolist())
            frames.append(renderer.frame())
        return frames
    finally:
        env.close()


def read_back(path):
    """The frames of a video file, as imageio decodes them."""
    imageio = pytest.importorskip('imageio.v2')
    with imageio.get_reader(path) as reader:
        # not list(reader): its length is unknown (inf). np.asarray: imageio's own ndarray
        # subclass (imageio.core.Array) warns under numpy 2 when numpy functions wrap it.
        return [np.asarray(frame) for frame in reader.iter_data()]


@pytest.mark.parametrize('name', ['Pendulum-v1', pytest.param('Arm2DEnv', marks=needs_osim)])
def test_a_short_mp4_and_gif_are_written_and_read_back(name, tmp_path):
    from PIL import Image
    frames = frames_of(name, 12)
    mp4, gif = str(tmp_path / 'out.mp4'), str(tmp_path / 'out.gif')
    with render.VideoWriter(mp4, gif, fps=10, gif_every=2, gif_scale=0.5) as writer:
        for frame in frames:
            writer.append(frame)
    back = read_back(mp4)
    assert len(back) == 12
    assert back[0].shape == frames[0].shape and back[0].dtype == np.uint8
    # H.264 is lossy, but the picture is the one given: close on average, not on every pixel
    assert np.abs(back[5].astype(int) - frames[5].astype(int)).mean() < 8
    with Image.open(gif) as picture:
        assert picture.n_frames == 6
        assert picture.size == (frames[0].shape[1] // 2, frames[0].shape[0] // 2)


def test_odd_sized_frames_are_padded_for_h264(tmp_path):
    frame = np.zeros((33, 35, 3), dtype=np.uint8)
    path = str(tmp_path / 'odd.mp4')
    with render.VideoWriter(path, fps=5) as writer:
        for _ in range(3):
            writer.append(frame)
    back = read_back(path)
    assert len(back) == 3 and back[0].shape == (34, 36, 3)


def test_what_cannot_be_pictured_says_why():
    with pytest.raises(render.RenderError, match='cannot be pictured'):
        render.Renderer(envs.make('CheapEnv'))
    with pytest.raises(render.RenderError, match="render_mode='rgb_array'"):
        render.Renderer(envs.make('Pendulum-v1'))  # built without video_kwargs
    with pytest.raises(render.RenderError, match='uint8'):
        render.VideoWriter().append(np.zeros((4, 4), dtype=np.float32))


def test_a_missing_encoder_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', None)  # as if not installed
    with pytest.raises(render.RenderError, match='pip install imageio imageio-ffmpeg'):
        render.VideoWriter(str(tmp_path / 'x.mp4')).append(np.zeros((4, 4, 3), dtype=np.uint8))
    assert issubclass(render.RenderError, errors.UserError)  # one line, no traceback


def test_a_gym_env_without_its_drawing_package_says_what_to_install(monkeypatch):
    env = envs.make('Pendulum-v1', **render.video_kwargs('Pendulum-v1', {}))
    env.reset(seed=1)
    monkeypatch.setitem(sys.modules, 'pygame', None)  # as if pygame were not installed
    with pytest.raises(render.RenderError, match='Pendulum-v1 cannot draw itself here: .*pip '
                                                 'install'):
        render.Renderer(env).frame()
    env.close()
