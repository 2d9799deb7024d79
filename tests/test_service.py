import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageChops

from shared.imaging.grids import grid_size
from tests.service_helpers import copy_store, make_client, png, publish_broken, publish_trained, wait_for, wait_ready

SERVICE_SETTINGS = {"max_images": 256}  # for the conftest `client`

# ------------------------------------------------------------------ images
def test_generate_seed_grid_reproduces_the_trainers_figure(client, trained_store):
    r = client.post("/generate", json={"model": "gan", "seed": 0, "count": 8, "scale": 4})
    image = png(r)
    assert r.headers["x-model"] == "gan" and r.headers["x-model-version"] == "1" and r.headers["x-image-count"] == "8"
    assert image.size == grid_size(8, (28, 28), 8, 2, 4)
    report = Image.open(trained_store / "gan" / "v1" / "report" / "samples.png")
    assert ImageChops.difference(image, report).getbbox() is None  # the same pixels: one code path


def test_sweep_reproduces_the_trainers_figure(client, trained_store):
    image = png(client.post("/sweep", json={"model": "dcgan", "scale": 3}))
    report = Image.open(trained_store / "dcgan" / "v1" / "report" / "sweep.png")
    assert image.size == report.size
    assert ImageChops.difference(image, report).getbbox() is None


@pytest.mark.parametrize("body,n,nrow", [
    ({"latent": [0.5] * 100}, 1, 8),
    ({"latents": [[0.1] * 100] * 5, "nrow": 2}, 5, 2),
    ({"seed": 3, "count": 17, "nrow": 4, "padding": 0}, 17, 4),
    ({"seed": 3, "count": 256, "nrow": 16, "scale": 2}, 256, 16),
])
@pytest.mark.parametrize("model,size", [("gan", 28), ("dcgan", 32)])
def test_generate_pixel_size_matches_the_request(client, body, n, nrow, model, size):
    image = png(client.post("/generate", json={"model": model, **body}))
    assert image.size == grid_size(n, (size, size), nrow, body.get("padding", 2), body.get("scale", 1))


def test_sweep_layout_modes_and_labels(client):
    body = {"model": "gan", "dims": [0, 99], "values": [-2, 2], "seed": 5, "count": 3, "scale": 2}
    unlabelled = png(client.post("/sweep", json={**body, "labels": False}))
    assert unlabelled.size == grid_size(2 * 2 * 3, (28, 28), 3, 2, 2)  # one row per (dim, value), one column per base
    labelled = png(client.post("/sweep", json=body))
    assert labelled.height == unlabelled.height and labelled.width > unlabelled.width
    added = png(client.post("/sweep", json={**body, "labels": False, "mode": "add"}))
    assert ImageChops.difference(added, unlabelled).getbbox() is not None  # offsetting differs from setting
    # the sweep's cells are /generate's images of the swept latents
    from shared.imaging.latents import seeded_latents, sweep_latents
    swept = sweep_latents(seeded_latents(5, 3, 100), [0, 99], [-2, 2]).tolist()
    direct = png(client.post("/generate", json={"model": "gan", "latents": swept, "nrow": 3, "scale": 2}))
    assert ImageChops.difference(direct, unlabelled).getbbox() is None


def test_count_alone_means_seed_0(client):
    alone = client.post("/generate", json={"model": "gan", "count": 3})
    assert alone.content == client.post("/generate", json={"model": "gan", "seed": 0, "count": 3}).content


def test_seed_is_reproducible_and_concurrent_requests_agree(client):
    body = {"model": "dcgan", "seed": 11, "count": 16}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: png(client.post("/generate", json=body)), range(16)))
    # batched with others (another batch size), a pixel may round one grey level the other way, never more
    assert all(ImageChops.difference(results[0], r).getextrema()[1] <= 1 for r in results)
    first8 = png(client.post("/generate", json={**body, "count": 8, "nrow": 8}))
    all16 = png(client.post("/generate", json={**body, "nrow": 8}))
    assert ImageChops.difference(first8, all16.crop((0, 0, *first8.size))).getextrema()[1] <= 1


# ------------------------------------------------------------------ errors: 4xx, never 500, service keeps serving
BAD_REQUESTS = [
    ("/generate", {"model": "nope", "seed": 0}, 404, "nope"),
    ("/generate", {"model": "gan", "version": 9, "seed": 0}, 404, "no version 9"),
    ("/sweep", {"model": "gan", "version": 2}, 404, "no version 2"),
    ("/generate", {"model": "../etc", "seed": 0}, 422, "model"),
    ("/generate", {"model": "GAN", "seed": 0}, 422, "model"),
    ("/generate", {"model": "gan", "latent": [0.0] * 99}, 422, "latent"),
    ("/generate", {"model": "gan", "latents": [[0.0] * 100, [0.0] * 3]}, 422, '"latents", 1'),
    ("/generate", {"model": "gan", "latent": []}, 422, "latent"),
    ("/generate", {"model": "gan", "latents": []}, 422, "latents"),
    ("/generate", {"model": "gan", "latents": [[]]}, 422, "latents"),
    ("/generate", {"model": "gan", "seed": 0, "count": 257}, 422, "count"),
    ("/generate", {"model": "gan", "seed": 0, "count": 0}, 422, "count"),
    ("/generate", {"model": "gan", "latents": [[0.0] * 100] * 257}, 422, "latents"),
    ("/generate", {"model": "gan", "seed": -1}, 422, "seed"),
    ("/generate", {"model": "gan", "count": 4, "latent": [0.0] * 100}, 422, "goes with `seed`"),
    ("/generate", {"model": "gan", "seed": 0, "latent": [0.0] * 100}, 422, "exactly one"),
    ("/generate", {"model": "gan"}, 422, "one of"),
    ("/generate", {"model": "gan", "seed": 0, "scale": 17}, 422, "scale"),
    ("/generate", {"model": "gan", "seed": 0, "scale": 10**9}, 422, "scale"),
    ("/generate", {"model": "gan", "seed": 0, "scale": 0}, 422, "scale"),
    ("/generate", {"model": "gan", "seed": 0, "count": 256, "nrow": 1, "scale": 16}, 422, "pixels"),
    ("/generate", {"model": "gan", "seed": 0, "nrow": 0}, 422, "nrow"),
    ("/generate", {"model": "gan", "seed": 0, "colour": "red"}, 422, "colour"),
    ("/generate", {"model": "gan", "seed": "zero"}, 422, "seed"),
    ("/generate", {"model": "gan", "seed": 0, "version": 0}, 422, "version"),
    ("/generate", {"model": "gan", "seed": 0, "version": "newest"}, 422, "version"),
    ("/generate", [1, 2], 422, "body"),
    ("/sweep", {"model": "gan", "dims": [100]}, 422, '"dims", 0'),
    ("/sweep", {"model": "gan", "dims": [-1]}, 422, "dims"),
    ("/sweep", {"model": "gan", "dims": []}, 422, "dims"),
    ("/sweep", {"model": "gan", "values": []}, 422, "values"),
    ("/sweep", {"model": "gan", "mode": "multiply"}, 422, "mode"),
    ("/sweep", {"model": "gan", "dims": list(range(20)), "count": 8}, 422, "dims"),  # 20 x 3 x 8 = 480 images
    ("/sweep", {"model": "gan", "latent": [1.0] * 7}, 422, "latent"),
]


@pytest.mark.parametrize("route,body,status,needle", BAD_REQUESTS)
def test_bad_input_gets_a_clear_4xx(client, route, body, status, needle):
    r = client.post(route, json=body)
    assert r.status_code == status, r.text
    assert "detail" in r.json() and needle in json.dumps(r.json())


@pytest.mark.parametrize("raw,field", [
    ('{"model": "gan", "latent": [NaN' + ", 0.0" * 99 + "]}", "latent"),
    ('{"model": "gan", "latents": [[Infinity' + ", 0.0" * 99 + "]]}", "latents"),
    ('{"model": "gan", "values": [-Infinity]}', "values"),
    ('{"model": "gan", "seed": 0', "json"),
    ("not json at all", "json"),
    (b'{"model": "g\xff\xfe"}', "body"),  # not UTF-8
])
def test_non_finite_numbers_are_422_and_broken_json_400(client, raw, field):
    route = "/sweep" if "values" in str(raw) else "/generate"
    r = client.post(route, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == (400 if field in ("json", "body") else 422) and field in json.dumps(r.json())


def test_oversized_bodies_get_413_and_the_service_keeps_serving(client):
    huge = json.dumps({"model": "gan", "latents": [[0.123456789] * 100] * 1200})  # ~1.5 MB
    r = client.post("/generate", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "MAX_BODY_BYTES" in r.json()["detail"]
    streamed = client.post("/generate", content=iter([huge[:700_000].encode(), huge[700_000:].encode()]),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert png(client.post("/generate", json={"model": "gan", "seed": 0}))


def test_no_500_in_metrics_after_all_that(client):
    text = client.get("/metrics").text
    assert 'status="500"' not in text
    assert 'latentlab_requests_total{method="POST",route="/generate",status="422"}' in text
    assert 'latentlab_requests_total{method="POST",route="/generate",status="200"}' in text
    assert "latentlab_request_duration_seconds_bucket" in text
    assert 'latentlab_images_generated_total{model="gan",version="1"}' in text
    assert 'latentlab_model_loads_total{model="dcgan",result="ok"} 1.0' in text
    assert 'latentlab_model_loaded{model="gan",precision="fp32",role="latest",version="1"} 1.0' in text
    for series in ("latentlab_batch_latents_bucket", "latentlab_queue_wait_seconds_bucket"):
        assert f'{series}{{le="+Inf",model="gan"}}' in text
    # every forward counted under what ran it (the tests' RUNTIME=torchscript, PRECISION=fp32)
    assert 'latentlab_forward_seconds_bucket{le="+Inf",model="gan",precision="fp32",runtime="torchscript"}' in text
    assert "latentlab_shed_requests_total" in text


# ------------------------------------------------------------------ models, health, docs
def test_models_listing(client):
    body = client.get("/models").json()
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"gan", "dcgan"}
    gan = by_name["gan"]
    assert gan["latest"] == 1 and gan["serving"] == 1 and gan["versions"][0]["latest"] is True
    assert gan["versions"][0]["manifest"]["architecture"] == "gan"
    one = client.get("/models/dcgan").json()
    assert one["name"] == "dcgan" and one["versions"][0]["manifest"]["image_shape"] == [1, 32, 32]
    assert client.get("/models/nope").status_code == 404
    assert client.get("/models/..%2Fetc").status_code in (404, 422)
    assert client.get("/models/Bad!").status_code == 422


def test_health_ready_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["serving"] == {"gan": 1, "dcgan": 1}
    docs = client.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/generate", "/sweep", "/models", "/models/{name}", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    for name in ("GenerateRequest", "SweepRequest"):
        assert schemas[name].get("examples"), name
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"
    assert "image/png" in spec["paths"]["/generate"]["post"]["responses"]["200"]["content"]
    listing = spec["paths"]["/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing["$ref"].endswith("/ModelList")  # the manifest's schema is documented, not a free-form dict
    assert {"latent_dim", "image_shape", "files", "metrics"} <= set(schemas["Manifest"]["properties"])


# ------------------------------------------------------------------ the store changing under a running service
def test_empty_store_is_up_but_not_ready_until_a_model_appears(tmp_path, fashion_dir):
    with make_client(tmp_path / "store") as c:
        assert c.get("/healthz").status_code == 200
        wait_for(lambda: "no complete version" in c.get("/readyz").text)
        r = c.get("/readyz")
        assert r.status_code == 503 and "python -m trainer" in r.json()["detail"]
        assert c.post("/generate", json={"model": "gan", "seed": 0}).status_code == 503
        publish_trained(tmp_path / "store", fashion_dir)
        wait_ready(c)
        assert png(c.post("/generate", json={"model": "gan", "seed": 0}))


@pytest.mark.slow
def test_hot_reload_under_load_fails_no_request(tmp_path, trained_store, fashion_dir):
    root = copy_store(trained_store, tmp_path / "store")
    with make_client(root) as c:
        wait_ready(c)
        statuses, versions, stop = [], set(), threading.Event()

        def hammer():
            while not stop.is_set():
                r = c.post("/generate", json={"model": "gan", "seed": 1, "count": 4})
                statuses.append(r.status_code)
                versions.add(r.headers.get("x-model-version"))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            assert publish_trained(root, fashion_dir, seed=2) == 2
            wait_for(lambda: c.get("/readyz").json()["serving"]["gan"] == 2)
            wait_for(lambda: "2" in versions)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert statuses and set(statuses) == {200}
        assert versions == {"1", "2"}
        # a pinned version keeps working after newer ones appear
        assert png(c.post("/generate", json={"model": "gan", "version": 1, "seed": 0})).size
        assert c.post("/generate", json={"model": "gan", "seed": 0}).headers["x-model-version"] == "2"


def test_broken_and_tampered_versions_are_skipped(tmp_path, trained_store, fashion_dir):
    root = copy_store(trained_store, tmp_path / "store")
    with make_client(root) as c:
        wait_ready(c)
        assert publish_broken(root) == 2
        wait_for(lambda: 'latentlab_model_loads_total{model="gan",result="failed"} 1.0' in c.get("/metrics").text)
        r = c.post("/generate", json={"model": "gan", "seed": 0})
        assert r.status_code == 200 and r.headers["x-model-version"] == "1"  # what was serving keeps serving
        for _ in range(3):  # asking again does not retry the broken load
            assert c.post("/generate", json={"model": "gan", "version": 2, "seed": 0}).status_code == 404
        assert 'latentlab_model_loads_total{model="gan",result="failed"} 1.0' in c.get("/metrics").text
        listing = c.get("/models/gan").json()
        assert listing["latest"] == 2 and listing["serving"] == 1

        side = tmp_path / "side"  # tampered where the service cannot see it, then moved in atomically
        publish_trained(side, fashion_dir, seed=3)
        with open(side / "gan" / "v1" / "generator.pt", "r+b") as f:
            f.seek(100)
            f.write(b"\x00\x01\x02")
        manifest = json.loads((side / "gan" / "v1" / "manifest.json").read_text())
        (side / "gan" / "v1" / "manifest.json").write_text(json.dumps({**manifest, "version": 3}))
        (side / "gan" / "v1").rename(root / "gan" / "v3")
        assert publish_trained(root, fashion_dir, seed=4) == 4
        wait_for(lambda: c.get("/readyz").json()["serving"]["gan"] == 4)
        assert [v["version"] for v in c.get("/models/gan").json()["versions"]] == [1, 2, 4]
        assert c.post("/generate", json={"model": "gan", "version": 3, "seed": 0}).status_code == 404


def test_pinned_versions_load_on_demand_and_are_evicted_lru(tmp_path, trained_store, fashion_dir):
    root = copy_store(trained_store, tmp_path / "store")
    for seed in (5, 6, 7):
        publish_trained(root, fashion_dir, seed=seed)  # gan v2, v3, v4
    with make_client(root, pinned_cache_size=1) as c:
        wait_for(lambda: c.get("/readyz").status_code == 200 and c.get("/readyz").json()["serving"].get("gan") == 4)
        loaded = lambda: c.get("/models/gan").json()["loaded"]
        assert loaded() == [4]
        for version in (1, 2, 1):
            r = c.post("/generate", json={"model": "gan", "version": version, "seed": 0})
            assert r.headers["x-model-version"] == str(version)
            assert loaded() == sorted({4, version})  # the latest stays, one older version at most


@pytest.mark.slow
def test_a_number_reused_by_hand_never_serves_the_old_weights(tmp_path, fashion_dir):
    root = tmp_path / "store"
    publish_trained(root, fashion_dir, seed=1)
    body = {"model": "gan", "seed": 0, "count": 4}
    with make_client(root) as client:
        wait_ready(client)
        old = client.post("/generate", json=body).content
        # by hand, around the publisher: delete v1 and the high-water mark, so other weights become v1 again
        shutil.rmtree(root / "gan" / "v1")
        (root / "gan" / ".high-water").unlink()
        assert publish_trained(root, fashion_dir, seed=2) == 1
        new = wait_for(lambda: (r := client.post("/generate", json=body)).status_code == 200 and r.content != old
                       and r.content)
        pinned = client.post("/generate", json={**body, "version": 1})
        assert pinned.status_code == 200, pinned.text
        assert pinned.headers["x-model-version"] == "1" and pinned.content == new
        shutil.rmtree(root / "gan" / "v1")  # gone for good: no longer served at all
        wait_for(lambda: client.post("/generate", json=body).status_code == 503)
