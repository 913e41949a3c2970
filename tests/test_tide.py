"""TIDE error analysis (jpegstudy.report.tide) on a hand-made COCO ground truth whose answers are known."""

import copy
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import matplotlib
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from jpegstudy.report import tide
from jpegstudy.tasks.detection_metric import evaluate_map

PNG = b"\x89PNG\r\n\x1a\n"
SIZE = 100  # every image is 100 x 100
# image 1: a square (category 1) and a disc (2); image 2: a square; image 3: nothing (background)
A, B, C = [10, 10, 30, 30], [50, 50, 40, 40], [20, 20, 40, 40]
OBJECTS = [(1, 1, A), (1, 2, B), (2, 1, C)]
CATEGORIES = [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}, {"id": 3, "name": "never annotated"}]


def ground_truth(objects=OBJECTS, crowds=()):
    """COCO of images 1-3 with `objects` and crowd regions `crowds`, each (image id, category id, [x, y, w, h]);
    every object's polygon is its box."""
    anns = []
    for n, (image_id, category_id, box) in enumerate(list(objects) + list(crowds), start=1):
        x, y, w, h = box
        anns.append({"id": n, "image_id": image_id, "category_id": category_id, "bbox": list(box), "area": w * h,
                     "iscrowd": int(n > len(objects)),
                     "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    coco = COCO()
    coco.dataset = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": SIZE, "height": SIZE} for i in (1, 2, 3)],
                    "categories": copy.deepcopy(CATEGORIES), "annotations": anns}
    coco.createIndex()
    return coco


def det(image_id, category_id, box, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(box), "score": score}


def perfect(score=0.9):
    return [det(i, c, box, score) for i, c, box in OBJECTS]


def shifted(box, dx):
    return [box[0] + dx, box[1], box[2], box[3]]


def iou(a, b):
    return float(mask_utils.iou([a], [b], [False])[0][0])


def assert_only(result, name):
    """`name` is the one main error with a dAP."""
    assert result["main"][name] > 0, result
    assert {k: v for k, v in result["main"].items() if k != name} == dict.fromkeys(set(tide.MAIN) - {name}, 0.0)


def test_perfect_detections_have_ap50_100_and_no_error():
    result = tide.errors(ground_truth(), perfect())
    assert result["ap"] == pytest.approx(100.0)
    assert result["main"] == dict.fromkeys(tide.MAIN, 0.0)
    assert result["special"] == {"FalsePos": 0.0, "FalseNeg": 0.0}
    assert (result["n_detections"], result["n_dropped"]) == (3, 0)


def test_wrong_class_over_an_object_is_a_class_error():
    # the disc detected as a square (scored last): square AP 100, disc AP 0 -> 50; fixing the class gives 100
    results = perfect()[:1] + [det(1, 1, B, 0.5)] + perfect()[2:]
    result = tide.errors(ground_truth(), results)
    assert result["ap"] == pytest.approx(50.0)
    assert_only(result, "Cls")
    assert result["main"]["Cls"] == pytest.approx(50.0)


def test_box_at_iou_03_is_a_localisation_error():
    box = shifted(A, 16)
    assert iou(box, A) == pytest.approx(0.304, abs=1e-3)
    results = [det(1, 1, box, 0.5)] + perfect()[1:]
    result = tide.errors(ground_truth(), results)
    assert_only(result, "Loc")
    # square: one hit then a miss (AP 51/101), disc 100
    assert result["main"]["Loc"] == pytest.approx(100 - (100 * 51 / 101 + 100) / 2)


def test_second_detection_of_a_found_object_is_a_duplicate():
    # scored between the two true squares, the copy costs precision at recall 1
    dupe = det(1, 1, shifted(A, 3), 0.8)
    assert iou(dupe["bbox"], A) > 0.5
    results = [det(1, 1, A, 0.9), dupe, det(1, 2, B, 0.9), det(2, 1, C, 0.7)]
    result = tide.errors(ground_truth(), results)
    assert_only(result, "Dupe")


def test_detection_on_an_empty_image_is_a_background_error():
    results = perfect(0.8) + [det(3, 1, [30, 30, 20, 20], 0.95)]
    result = tide.errors(ground_truth(), results)
    assert_only(result, "Bkg")
    assert result["special"]["FalsePos"] == pytest.approx(result["main"]["Bkg"])


def test_object_no_detection_comes_near_is_missed():
    result = tide.errors(ground_truth(), perfect()[:2])
    assert_only(result, "Miss")
    assert result["ap"] == pytest.approx((100 * 51 / 101 + 100) / 2)
    assert result["special"]["FalseNeg"] > 0 and result["special"]["FalsePos"] == 0.0


def test_detections_of_a_category_without_ground_truth_are_dropped():
    extra = [det(1, 3, [0, 0, 10, 10], 0.99), det(3, 3, [5, 5, 10, 10], 0.99)]
    result = tide.errors(ground_truth(), perfect() + extra)
    # kept, tidecv would average category 3 in with AP 0 (dbolya/tide#28): 66.7, COCOeval 100
    assert result["ap"] == pytest.approx(100.0)
    assert result["main"] == dict.fromkeys(tide.MAIN, 0.0)
    assert (result["n_detections"], result["n_dropped"]) == (3, 2)


def test_image_ids_restrict_the_evaluation_and_the_categories_counted():
    # image 1 is all wrong, image 2 right; on image 2 alone the disc has no ground truth, so its detection drops
    results = [det(1, 1, [70, 0, 20, 20], 0.9), det(2, 1, C, 0.9), det(2, 2, [0, 70, 20, 20], 0.95)]
    result = tide.errors(ground_truth(), results, image_ids=[2])
    assert result["ap"] == pytest.approx(100.0)
    assert result["main"] == dict.fromkeys(tide.MAIN, 0.0)
    assert (result["n_detections"], result["n_dropped"]) == (1, 1)
    assert tide.errors(ground_truth(), results)["ap"] < 100


def test_no_detections_gives_ap_0_and_undefined_miss():
    result = tide.errors(ground_truth(), [])
    assert result["ap"] == 0.0
    assert result["main"] == {**dict.fromkeys(tide.MAIN, 0.0), "Miss": None}
    assert result["special"] == {"FalsePos": 0.0, "FalseNeg": None}
    assert (result["n_detections"], result["n_dropped"]) == (0, 0)


def test_detections_only_on_crowd_regions_are_none_scored():
    result = tide.errors(ground_truth(crowds=[(3, 1, [0, 0, 60, 60])]), [det(3, 1, [5, 5, 20, 20], 0.9)])
    assert (result["ap"], result["main"]["Miss"], result["special"]["FalseNeg"]) == (0.0, None, None)
    assert result["n_detections"] == 1


def test_detection_on_a_crowd_region_is_ignored_not_background():
    on_crowd = det(3, 1, [5, 5, 20, 20], 0.95)
    crowded = tide.errors(ground_truth(crowds=[(3, 1, [0, 0, 60, 60])]), perfect() + [on_crowd])
    assert crowded["ap"] == pytest.approx(100.0)
    assert crowded["main"] == dict.fromkeys(tide.MAIN, 0.0)
    # the control: without the crowd region the same detection is background
    assert tide.errors(ground_truth(), perfect() + [on_crowd])["main"]["Bkg"] > 0
    # a crowd region of another category ignores nothing, as in COCOeval
    assert tide.errors(ground_truth(crowds=[(3, 2, [0, 0, 60, 60])]), perfect() + [on_crowd])["main"]["Bkg"] > 0


def mixed_results():
    """Every error type at once, on three categories' worth of detections with distinct scores."""
    return [det(1, 1, A, 0.91), det(1, 1, shifted(A, 3), 0.83),           # a hit and its duplicate
            det(1, 2, shifted(B, 15), 0.62), det(1, 1, B, 0.55),          # the disc badly placed, then as a square
            det(2, 1, C, 0.77), det(3, 2, [10, 60, 25, 25], 0.88),        # a hit, and background
            det(3, 3, [0, 0, 50, 50], 0.99), det(2, 1, [0, 70, 15, 15], 0.95)]  # no ground truth, background


def as_masks(results):
    """`results` with each box as a rectangular mask (RLE, str counts as detection_metric.coco_results writes)."""
    out = []
    for r in results:
        x, y, w, h = (int(v) for v in r["bbox"])
        m = np.zeros((SIZE, SIZE), np.uint8)
        m[y:y + h, x:x + w] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({k: v for k, v in r.items() if k != "bbox"} | {"segmentation": rle})
    return out


def test_tide_ap50_agrees_with_cocoeval_ap50():
    crowds = [(3, 1, [60, 0, 40, 40])]
    results = mixed_results() + [det(3, 1, [62, 2, 20, 20], 0.7)]  # on the crowd region
    result = tide.errors(ground_truth(crowds=crowds), results)
    stats, _ = evaluate_map(ground_truth(crowds=crowds), results)
    assert 0 < result["ap"] < 100
    assert result["ap"] == pytest.approx(stats["AP50"], abs=1e-6)
    assert all(result["main"][name] > 0 for name in ("Loc", "Dupe", "Bkg")), result


def test_in_memory_data_equal_tidecvs_own_coco_loaders(tmp_path):
    # tidecv.datasets reads files (and downloads without a path): here only to check errors()' conversion
    from tidecv import TIDE, datasets

    gt = ground_truth(crowds=[(3, 1, [60, 0, 40, 40])])
    results = [r for r in mixed_results() if r["category_id"] != 3]  # nothing for errors() to drop
    (tmp_path / "gt.json").write_text(json.dumps(gt.dataset))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    for iou_type, mode in (("bbox", TIDE.BOX), ("segm", TIDE.MASK)):
        ours = tide.errors(gt, results if iou_type == "bbox" else as_masks(results), iou_type=iou_type)
        with matplotlib.rc_context():  # TIDE() restyles matplotlib for the whole process
            own = TIDE(mode=mode)
        if iou_type == "segm":
            (tmp_path / "dt.json").write_text(json.dumps(as_masks(results)))
        own.evaluate(datasets.COCO(str(tmp_path / "gt.json")), datasets.COCOResult(str(tmp_path / "dt.json")))
        errors = own.get_all_errors()
        assert ours["ap"] == pytest.approx(next(iter(own.runs.values())).ap)
        assert ours["main"] == pytest.approx(errors["main"]["dt"])
        assert ours["special"] == pytest.approx(errors["special"]["dt"])


def test_tide_ap50_agrees_with_cocoeval_on_masks():
    results = as_masks(mixed_results())
    result = tide.errors(ground_truth(), results, iou_type="segm")
    stats, _ = evaluate_map(ground_truth(), results, iou_type="segm")
    assert 0 < result["ap"] < 100
    assert result["ap"] == pytest.approx(stats["AP50"], abs=1e-6)


def test_inputs_and_matplotlib_style_are_left_alone():
    gt, results = ground_truth(crowds=[(3, 1, [0, 0, 60, 60])]), as_masks(mixed_results())
    before = (copy.deepcopy(gt.dataset), copy.deepcopy(results), dict(matplotlib.rcParams))
    tide.errors(gt, results, iou_type="segm")
    assert (gt.dataset, results, dict(matplotlib.rcParams)) == before


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="not in the ground truth"):
        tide.errors(ground_truth(), [det(9, 1, A, 0.9)])
    with pytest.raises(ValueError, match="category_id 7"):
        tide.errors(ground_truth(), [det(1, 7, A, 0.9)])
    with pytest.raises(ValueError, match="no segmentation"):
        tide.errors(ground_truth(), perfect(), iou_type="segm")
    with pytest.raises(ValueError, match="AP is undefined"):
        tide.errors(ground_truth(), perfect(), image_ids=[3])
    with pytest.raises(ValueError, match="iou_type"):
        tide.errors(ground_truth(), perfect(), iou_type="keypoints")


def assert_png(path, min_width=300, min_height=200):
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width >= min_width and im.height >= min_height, im.size


def test_summary_plot_writes_a_png(tmp_path):
    out = tmp_path / "summary.png"
    tide.summary_plot(tide.errors(ground_truth(), mixed_results()), out, "faster_rcnn, Q=10")
    assert_png(out, 600, 500)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.png"]  # no temporary file left behind


def test_summary_plot_of_perfect_and_empty_results(tmp_path):
    for name, results in (("perfect", perfect()), ("empty", [])):
        tide.summary_plot(tide.errors(ground_truth(), results), tmp_path / f"{name}.png", name)
        assert_png(tmp_path / f"{name}.png", 600, 500)


def test_two_summary_plots_in_parallel_threads(tmp_path):
    result = tide.errors(ground_truth(), mixed_results())
    start = threading.Barrier(2)

    def draw(name):
        start.wait()
        tide.summary_plot(result, tmp_path / name, name)
        return name

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(draw, ["a.png", "b.png"])) == ["a.png", "b.png"]
    for name in ("a.png", "b.png"):
        assert_png(tmp_path / name, 600, 500)


def test_dap_by_quality_figure_writes_png_and_pdf(tmp_path):
    rows = []
    for model, scale in (("faster_rcnn", 1.0), ("retinanet", 1.5)):
        for quality in (None, 10, 50, 90):
            worse = 1.0 if quality is None else 1 + (100 - quality) / 20
            main = {name: scale * worse * (k + 1) for k, name in enumerate(tide.MAIN)}
            rows.append({"quality": quality, "model": model, "main": main})
    rows[1]["main"]["Miss"] = None  # undefined: a gap
    png, pdf = tmp_path / "dap.png", tmp_path / "dap.pdf"
    tide.dap_by_quality_figure(rows, png, pdf)
    assert_png(png, 800, 300)
    assert pdf.read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="two rows"):
        tide.dap_by_quality_figure(rows + rows[:1], tmp_path / "twice.png")
