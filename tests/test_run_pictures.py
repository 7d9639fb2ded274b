"""The pictures a run folder shows (reconstructions, interpolations) come from a fixed uniform
sample of the test split, not its first images: an image folder is stored class by class."""

import torch

from conftest import TINY, blob_images
from vaekit.data import ImageDataset
from vaekit.models import build_model, model_config
from vaekit.run.pictures import draw_run_pictures
from vaekit.run import resolve_config


class RecordingDataset(ImageDataset):
    """A split that remembers which images were read."""

    def batch(self, index):
        self.read.append(torch.as_tensor(index).clone())
        return super().batch(index)


def test_run_pictures_show_a_uniform_sample_of_a_split_stored_by_class(tmp_path):
    # 64 blank images, then 64 blobs: the first 16 would all be blank
    images = torch.cat([torch.zeros(64, 1, 16, 16, dtype=torch.uint8), blob_images(64, 16)])
    data = RecordingDataset("sorted", "test", images, None, None, "memory")
    data.read = []
    torch.manual_seed(0)
    model = build_model("vae", model_config("vae", dict(TINY)), (1, 16, 16)).eval()
    draw_run_pictures(tmp_path, model, data, resolve_config("vae"))
    assert (tmp_path / "reconstructions.png").exists() and (tmp_path / "interpolations.png").exists()
    shown, interpolated = data.read[0], data.read[1]
    assert len(shown) == 16 and len(interpolated) == 12
    assert 4 <= int((shown >= 64).sum()) <= 12  # about half from each class
    assert set(interpolated.tolist()) <= set(shown.tolist())  # the interpolations' ends are the same images
    again = RecordingDataset("sorted", "test", images, None, None, "memory")
    again.read = []
    draw_run_pictures(tmp_path, model, again, resolve_config("vae"))
    assert torch.equal(again.read[0], shown)  # the same images every time
