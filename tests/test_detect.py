import numpy as np
import pytest

from facesr.detect import FaceDetector
from facesr.track import FaceTracker
from helpers import ASTRONAUT_FACE, GRACE_HOPPER_FACE, downscale, iou, on_canvas


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:  # the default: full range
        yield d


@pytest.mark.parametrize("kind", ["short", "full"])
def test_detector_finds_the_astronaut_and_grace_hopper(kind, astronaut, grace_hopper):
    with FaceDetector(kind) as det:
        for photo, truth in ((astronaut, ASTRONAUT_FACE), (grace_hopper, GRACE_HOPPER_FACE)):
            found = det(photo)
            assert len(found) == 1
            assert iou(found[0].box, truth) > 0.6
            assert found[0].score > 0.7


def test_full_range_finds_both_faces_in_a_low_resolution_call_frame(detector, astronaut, grace_hopper):
    frame = on_canvas(grace_hopper[:512], at=(700, 100), canvas=on_canvas(astronaut, at=(80, 150)))
    lr = downscale(frame, 4)  # 320x180, faces about 24 and 48 px
    with FaceDetector("full") as full:
        boxes = sorted((d.box for d in full(lr)), key=lambda b: b[0])
    assert len(boxes) == 2
    assert iou(boxes[0] * 4, np.add(ASTRONAUT_FACE, [80, 150, 80, 150])) > 0.5
    assert iou(boxes[1] * 4, np.add(GRACE_HOPPER_FACE, [700, 100, 700, 100])) > 0.5


def test_no_face_no_detection(detector):
    rng = np.random.default_rng(0)
    assert detector(np.full((180, 320, 3), 90, np.uint8)) == []
    assert detector(rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)) == []


def _call_frame(photo, x, y):
    return downscale(on_canvas(photo, at=(x, y)), 4)


def test_still_face_gives_the_same_box_every_frame(detector, grace_hopper):
    tracker = FaceTracker(detector, detect_every=3, fps=25)
    base = _call_frame(grace_hopper, 400, 60)
    rng = np.random.default_rng(1)
    boxes, ids = [], set()
    for _ in range(60):  # sensor noise changes every frame; the crop must not
        noisy = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
        tracks = tracker.update(noisy)
        assert len(tracks) == 1
        boxes.append(tuple(tracks[0].box))
        ids.add(tracks[0].id)
    assert ids == {1}
    assert len(set(boxes[5:])) == 1, f"box jittered: {sorted(set(boxes))}"


def test_tracker_follows_a_moving_face_with_one_id(detector, grace_hopper):
    tracker = FaceTracker(detector, detect_every=3, fps=25)
    for i in range(50):
        x = 100 + 12 * i  # 3 LR px per frame, a brisk head movement
        tracks = tracker.update(_call_frame(grace_hopper, x, 60))
        assert [t.id for t in tracks] == [1]
        truth = np.add(GRACE_HOPPER_FACE, [x, 60, x, 60]) / 4
        assert iou(tracks[0].box, truth) > 0.5, f"frame {i}: {tracks[0].box} vs {truth}"


def test_faces_entering_and_leaving(astronaut, grace_hopper):
    detector = FaceDetector("full")  # the astronaut is small here
    tracker = FaceTracker(detector, detect_every=3, fps=25, fade_frames=4)
    alone = downscale(on_canvas(astronaut, at=(80, 150)), 4)
    both = downscale(on_canvas(grace_hopper[:512], at=(700, 100), canvas=on_canvas(astronaut, at=(80, 150))), 4)
    for _ in range(6):
        first = tracker.update(alone)
    assert len(first) == 1 and first[0].alpha == 1.0
    newcomer = []  # the second face's blend weight, frame by frame
    for _ in range(12):
        tracks = tracker.update(both)
        newcomer += [t.alpha for t in tracks if t.id == 2]
    assert {t.id for t in tracks} == {1, 2}  # the newcomer gets a new id, the first keeps its own
    assert newcomer[0] < 1.0 and newcomer[-1] == 1.0, "a face entering fades in"
    assert newcomer == sorted(newcomer)
    for _ in range(30):
        last = tracker.update(alone)
    assert [t.id for t in last] == [1], "a face that left is dropped"


def test_a_face_that_leaves_fades_out_over_several_frames(detector, grace_hopper):
    tracker = FaceTracker(detector, detect_every=3, fps=25, fade_frames=4)
    present = _call_frame(grace_hopper, 400, 60)
    gone = np.full_like(present, 118)  # the room without the person
    for _ in range(9):
        tracks = tracker.update(present)
    assert [(t.id, t.alpha) for t in tracks] == [(1, 1.0)]
    box = tracks[0].box.copy()
    alphas = []  # the face's blend weight, frame by frame, after it left
    for _ in range(20):
        tracks = tracker.update(gone)
        assert [t.id for t in tracks] in ([], [1])
        if tracks:
            assert iou(tracks[0].box, box) > 0.5  # it fades where it was
        alphas.append(tracks[0].alpha if tracks else 0.0)
    assert alphas == sorted(alphas, reverse=True), alphas  # only ever fading
    assert alphas[-1] == 0.0 and tracker.tracks == [], "a face that left is dropped in the end"
    fading = [a for a in alphas if 0.0 < a < 1.0]
    assert len(fading) >= 3, f"the face vanished instead of fading out: {alphas}"
    assert np.all(np.diff(fading) < 0)  # a step down each frame, not held part-way


def test_tracker_restarts_when_the_frame_size_changes(detector, grace_hopper):
    tracker = FaceTracker(detector)
    assert len(tracker.update(_call_frame(grace_hopper, 400, 60))) == 1
    tracks = tracker.update(downscale(grace_hopper, 2))
    assert len(tracks) == 1 and tracks[0].alpha == 1.0


def test_unsure_or_tiny_detections_start_no_track():
    from facesr.detect import Detection

    class Scripted:
        def __init__(self, script):
            self.script = iter(script)

        def __call__(self, frame):
            return next(self.script)

    face = np.array([40.0, 20.0, 80.0, 60.0])
    script = [
        [Detection(face, 0.55)],  # too unsure to start a track
        [Detection(np.array([5.0, 5.0, 12.0, 12.0]), 0.95)],  # too small to gain from SR
        [Detection(face, 0.9)],  # starts a track
        [Detection(face + 1, 0.52)],  # ... which an unsure detection keeps alive
    ]
    tracker = FaceTracker(Scripted(script), detect_every=1)
    frame = np.zeros((90, 160, 3), np.uint8)
    assert tracker.update(frame) == [] and tracker.update(frame) == []
    assert len(tracker.update(frame)) == 1
    tracks = tracker.update(frame)
    assert len(tracks) == 1 and tracks[0].misses == 0


def test_detector_cadence_every_other_frame_without_faces_every_detect_every_with():
    from facesr.detect import Detection
    from facesr.track import DETECT_EVERY

    calls = []

    class Counting:
        def __call__(self, frame):
            calls.append(len(calls))
            n = len(calls)
            return [Detection(np.array([40.0, 20.0, 80.0, 60.0]), 0.9)] if n >= 2 else []

    tracker = FaceTracker(Counting())
    assert tracker.detect_every == DETECT_EVERY
    frame = np.zeros((90, 160, 3), np.uint8)
    ran = []
    for _ in range(4 + 3 * DETECT_EVERY):
        ran.append(tracker.detects_next)
        tracker.update(frame)
    # no face: frames 0 and 2 look; the face found at frame 2 is then looked for every DETECT_EVERY frames
    assert [i for i, r in enumerate(ran) if r] == [0, 2] + [k for k in range(DETECT_EVERY, len(ran), DETECT_EVERY)]
    assert len(calls) == sum(ran) and len(tracker.tracks) == 1
