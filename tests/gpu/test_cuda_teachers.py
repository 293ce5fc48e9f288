"""The classifier and torchvision / timm teachers on CUDA: half precision, GAN steps, teacher training."""

import pytest
import torch

from kdgan.config import resolve
from kdgan.teachers import build_teacher
from kdgan.training.loop import Trainer
from tests.unit.test_checkpoint import tiny_data
from tests.unit.test_teachers import saved_classifier, tiny_labelled

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture
def teacher_files(tmp_path):
    import timm
    import torchvision

    saved_classifier(tmp_path / "classifier", ("c0", "c1", "c2"))
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    torch.save(timm.create_model("test_vit").state_dict(), tmp_path / "vit.pth")
    return {"classifier": str(tmp_path / "classifier"), "torchvision:resnet18": str(tmp_path / "r18.pth"),
            "timm:test_vit": str(tmp_path / "vit.pth")}


@pytest.mark.parametrize("name", ["classifier", "torchvision:resnet18", "timm:test_vit"])
def test_half_precision_teacher_matches_fp32(teacher_files, name):
    half = build_teacher(name, weights=teacher_files[name], device="cuda")
    full = build_teacher(name, weights=teacher_files[name], device="cuda", half=False)
    assert half.dtype == torch.float16 and full.dtype == torch.float32
    x = torch.rand(8, 3, 32, 32, device="cuda") * 2 - 1
    with torch.no_grad():
        a, b = half.image_features(x), full.image_features(x)
    assert a.dtype == torch.float32 and a.shape == b.shape
    assert (a - b).norm() / b.norm() < 2e-2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["classifier", "torchvision:resnet18"])
def test_training_steps_with_the_new_teachers_on_cuda(tmp_path, teacher_files, precision, name):
    fields = {"data": "in-memory", "device": "cuda", "precision": precision, "teacher": name,
              "teacher_weights": teacher_files[name], "steps": 2}
    t = Trainer(resolve("tiny", fields), tmp_path / "run", dataset=tiny_data())
    assert t.teacher.dtype == torch.float16
    assert t.run()["step"] == 2
    assert all(torch.isfinite(p).all() for p in [*t.G.parameters(), *t.D.parameters()])


def test_classifier_training_on_cuda(tmp_path):
    from kdgan.teachers.classifier_train import ClassifierTrainConfig, train_classifier

    data, gan = tiny_labelled(tmp_path / "ds")
    info = train_classifier(ClassifierTrainConfig(str(data), exclude=(str(gan),), width=4, blocks=1, epochs=2,
                                                  batch_size=8, device="cuda"), tmp_path / "teacher")
    assert info["exclusion"]["excluded_images"] == 5 and len(info["history"]) == 2
    assert build_teacher("classifier", weights=str(tmp_path / "teacher"), device="cuda").dim == 16
