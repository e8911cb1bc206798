"""Rates and sizes the released models were trained with (facts of the reference implementation)."""

VIDEO_FPS = 25
AUDIO_SR = 16_000
SAMPLES_PER_FRAME = AUDIO_SR // VIDEO_FPS  # 640

RESIZE_SHORT_SIDE = 256  # frames are decoded with this short side ...
CROP_SIZE = 224  # ... then centre-cropped to this

SEGMENT_FRAMES = 16  # 0.64 s
SEGMENT_STRIDE_FRAMES = 8  # 0.32 s
SEGMENT_SAMPLES = SEGMENT_FRAMES * SAMPLES_PER_FRAME  # 10,240
SEGMENT_STRIDE_SAMPLES = SEGMENT_STRIDE_FRAMES * SAMPLES_PER_FRAME  # 5,120
SEGMENT_STRIDE_SEC = SEGMENT_STRIDE_FRAMES / VIDEO_FPS  # 0.32: segment k starts at 0.32 k
MAX_WINDOWS = 32  # default analysis budget (windows of a long file; inference.analyze, benchmarks/bench_long.py)
DEFAULT_MAX_OFFSET_SEC = 8.0  # predict's search half-width beyond the model's +-2 s (docs/reliability.md)
# monitor's defaults (docs/monitoring.md): a reading about every 2 s, as broadcast lip-sync monitors give; alerts
# after the fewest readings with no false alarm on in-sync streams (benchmarks/bench_monitor.py alerts)
MONITOR_HOP_SEC = 1.92
MONITOR_ALERT_AFTER = 5
MONITOR_MEDIAN_OF = 10
MONITOR_MAX_LAG_SEC = 30.0
MONITOR_TIMEOUT_SEC = 5.0
STAGES = ("contrastive", "sync", "synchronizability")  # training stages I, II, III
METRICS = ("desync", "offset")  # what `score` measures (inference.score)
BT1359_SEC = (-0.125, 0.045)  # ITU-R BT.1359 detectability: audio lagging 125 ms .. leading 45 ms
N_SEGMENTS = 14  # one 4.8 s window
WINDOW_SEC = (SEGMENT_FRAMES + (N_SEGMENTS - 1) * SEGMENT_STRIDE_FRAMES) / VIDEO_FPS  # 4.8

# log-mel of the audio encoder (torchaudio.transforms.MelSpectrogram defaults otherwise)
N_FFT = 1024
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 128
MEL_FRAMES = 66  # 65 frames per segment, right-padded with one 0 column
AST_MEAN = -4.2677393
AST_STD = 4.5689974
LOG_EPS = 1e-6

# offset classes: -2.0 .. +2.0 s by 0.2 s; positive = audio leads the video
MAX_OFFSET_SEC = 2.0
N_OFFSET_CLASSES = 21

# How audio is placed against the frames: "true" (its timestamps) or "authors" (as the released weights' software
# stack decoded it: io.decode.load_av)
TIMINGS = ("true", "authors")
