"""Every setting of glcic. Edit here, or override any key on the command line:

    python train.py --BATCH_SIZE=8 --MASK_CHANNEL=False

Code reads `config.KEY` at use time, so an override applies everywhere. A mistake here (a line
that does not parse, an unknown name, a wrong type or range) stops every script with one line
naming this file's line. A new setting also needs its type in glcic/settings.py (TYPES).
"""
# --- data ---
IMAGE_SIZE = 128  # side of the square training images, px (divisible by 4)
LOCAL_SIZE = 64  # side of the local discriminator's patch around the hole, px
HOLE_MIN = 24  # smallest hole side, px
HOLE_MAX = 48  # largest hole side, px (<= LOCAL_SIZE)
NUM_IMAGES = 5000  # images to_npy.py picks from the source folder
TRAIN_RATIO = 0.95  # share of NUM_IMAGES for training; the rest is the test split
VAL_IMAGES = 300  # of the training share, held out to score phase 3 each epoch (x_val.npy); 0 where that is over a tenth of it
FLIP = True  # random horizontal flip of training batches (faces are symmetric)
SEED = 0  # seed for image picking, shuffling, holes and initial weights

# --- model ---
WIDTH = 1  # every layer's channels are divided by this, keeping at least 1 (the output keeps 3): 1 the paper's widths (Tables 1-2); 8 tiny models for tests
MASK_CHANNEL = True  # True: hole filled with the mean pixel + mask as a 4th input channel (paper); False: 3-channel x*(1-mask) (common TF1 code)
ADVERSARIAL_G = True  # True: generator gets the adversarial gradient in phase 3 (paper); False: mse only
LOCAL_CENTRED = True  # True: the local discriminator's patch is centred on the hole, clamped at the border (paper); False: anywhere that holds the hole
REAL_OWN_HOLES = True  # True: real images' local patches come from random holes of their own (paper, Algorithm 1); False: at the fakes' patches
D_FC_RELU = True  # True: ReLU after each discriminator branch's FC-1024 (without it FC-1024 -> concat -> FC-1 is one linear map); False: none
D_FIRST = True  # True: phase 3 updates D, then G against the updated D (paper; one more pass of D); False: both from one pass
BN_DECAY = 0.99  # moving-average decay of batch-norm statistics
BN_EPSILON = 1e-3  # batch-norm variance epsilon
BN_RECALIBRATE_BATCHES = 20  # batches used to re-estimate batch-norm statistics before each save (0: off)

# --- training ---
BATCH_SIZE = 16  # images per step; lower it if the GPU runs out of memory
REPLICAS = 0  # devices that split each batch (docs/several-gpus.md): 0 every visible GPU, 1 one device; N > 1 on a machine without GPU: N CPU devices
ACCUM_STEPS = 1  # batches whose mean gradient makes one update: BATCH_SIZE * ACCUM_STEPS images per step, batch norm sees BATCH_SIZE
PRECISION = 'float32'  # the networks' arithmetic in training: 'float32'; 'float16' (GPU tensor cores, with dynamic loss scaling); 'bfloat16' (Ampere and newer GPUs; on a CPU 1.8-2.1x float32 on AMD Zen 4, 0.5-0.6x on a Xeon without AMX, BENCHMARKS.md); weights and checkpoints stay float32
LEARNING_RATE = 1e-3  # Adam learning rate for both networks
BETA1 = 0.9  # Adam beta1
ALPHA = 1e-4  # weight of the adversarial loss against MSE_SCALE * mse; the paper's 4e-4 lost 1.5 dB more hole PSNR at equal minutes (QUALITY.md)
MSE_SCALE = 0.25  # 0.25: G's mse as on [0, 1] pixels (the paper's sigmoid output), so ALPHA is the paper's alpha; 1.0: on [-1, 1] (ALPHA then acts 4x weaker)
PRETRAIN_EPOCH = 100  # phase 1: epochs of completion network with mse only
D_EPOCH = 11  # phase 2: epochs of discriminator only (paper: Td/Tc = 10k/90k of phase 1)
MAX_EPOCH = 500  # hard cap on the total epochs over all phases
STOP_LOSS = 0.005  # phase 3 ends when the mean realism (glcic/realism.py, lower is better) of the last STOP_EPOCHS epochs is not this much below every earlier window's, or hole PSNR fell 0.5 dB (glcic/stopping.py); 0: never, run to MAX_EPOCH
STOP_EPOCHS = 10  # epochs in each window of the stop rule (at most 32); it decides from epoch 2 * STOP_EPOCHS of phase 3 on
SAVE_MINUTES = 10.0  # also save backup/latest this often within an epoch, minutes
KEEP_CHECKPOINTS = 3  # older backup/latest checkpoints kept besides the newest
LOG_EVERY = 10  # steps between TensorBoard points and progress-bar updates
WORKER_WAIT_SECONDS = 600.0  # with TF_CONFIG: how long a worker waits for the others (at the start, then in each step) before it stops, s
SAMPLE_COUNT = 8  # fixed test images in each output/epoch_NNNN.png

# --- presets ---
PRESET = ''  # '' here (the values above: the paper's schedule, for a GPU); --PRESET=cpu on the command line sets PRESETS['cpu'] (QUALITY.md)
PRESETS = {
    # 2 hours on a 2-core CPU: smaller steps, phase 1 for the 2 hours (it beat phase 3 there), then 2 and 3.
    'cpu': dict(BATCH_SIZE=8, PRETRAIN_EPOCH=5, D_EPOCH=1),
}

# --- paths ---
IMAGE_DIR = 'data/images'  # to_npy.py reads photos from here (recursively)
NPY_DIR = 'data/npy'  # x_train.npy, x_test.npy and meta.json
BACKUP_DIR = 'backup'  # checkpoints and the run's config.json
OUTPUT_DIR = 'output'  # sample grids, loss.csv, loss.png, logs/, test/

# Settings that shape the graph: a checkpoint only restores into the same values.
ARCHITECTURE_KEYS = ('IMAGE_SIZE', 'LOCAL_SIZE', 'MASK_CHANNEL', 'WIDTH')


# The parser and the checks live in glcic/settings.py; config.parse_overrides(...) and the like
# keep working, and the values above are checked here as the command line's are.
from glcic import settings as _settings  # noqa: E402
from glcic.settings import (ConfigError, as_dict, help_text, keys, parse_overrides,  # noqa: E402,F401
                            preset_values, set_values, validate)
_settings.check_file()
