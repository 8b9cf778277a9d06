"""Provenance: C2PA manifests signed here with a throwaway ES256 chain, invisible watermarks embedded here with the
reference `invisible-watermark` package, generator metadata written with Pillow; the strong-evidence rule; the
`udfd provenance` command (no torch); bad and hostile input. Offline, on files the tests make."""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from udfd.config import Settings
from udfd.pipeline import analyze_image
from udfd.provenance import (
    TIME_LIMIT_S,
    C2pa,
    Metadata,
    Provenance,
    Watermark,
    apply_evidence,
    read_provenance,
    source_types,
)
from udfd.types import Overall, Score
from udfd.watermarks import SCHEMES, block_bits, decode_bits

MAX = 50 * 1024 * 1024
AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


def _noise(h: int = 300, w: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encode(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def _png(text: dict[str, str], arr: np.ndarray | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    return _encode(_noise() if arr is None else arr, "PNG", pnginfo=info)


class _SaysReal:
    """A detector stub that calls every face real with certainty."""

    name, version, threshold, modality = "stub", "0", 0.5, "image"

    def preprocess(self, crops):
        return list(crops)

    def predict(self, batch):
        return [Score("stub", 0.01, 0.5) for _ in batch]

    def explain_target(self):  # the Detector protocol: a stub cannot be explained (the report says so)
        return None


def _verdict(data: bytes):
    return analyze_image(data, settings=Settings(), detectors=[_SaysReal()])


# -- generator metadata ----------------------------------------------------------------------------------------
def test_a1111_parameters_chunk_is_reported_not_strong():
    p = read_provenance(_png({"parameters": "portrait of a man\nSteps: 20, Sampler: Euler a, CFG scale: 7"}),
                        max_bytes=MAX)
    (f,) = p.metadata.fields
    assert (f.source, f.name, f.generator, f.declares_ai) == ("PNG text", "parameters", "AUTOMATIC1111 / SD WebUI",
                                                                True)
    assert "Steps: 20" in f.value
    assert p.strong == () and any("parameters" in r for r in p.reported)


def test_comfyui_prompt_and_workflow_chunks():
    prompt = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 1, "text": "x" * 1000}}})
    p = read_provenance(_png({"prompt": prompt, "workflow": "{}"}), max_bytes=MAX)
    names = {f.name: f for f in p.metadata.fields}
    assert set(names) == {"prompt", "workflow"} and names["prompt"].generator == "ComfyUI"
    assert len(names["prompt"].value) <= 200 and names["prompt"].value.endswith("\N{HORIZONTAL ELLIPSIS}")


def test_novelai_chunks():
    p = read_provenance(_png({"Software": "NovelAI", "Comment": json.dumps({"steps": 28})}), max_bytes=MAX)
    assert {(f.name, f.generator) for f in p.metadata.fields} == {("Software", "NovelAI"), ("Comment", "NovelAI")}


def test_jpeg_exif_software():
    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly Image 3"
    (f,) = read_provenance(_encode(_noise(), "JPEG", exif=exif), max_bytes=MAX).metadata.fields
    assert (f.source, f.name, f.value, f.declares_ai) == ("EXIF", "Software", "Adobe Firefly Image 3", True)
    exif[0x0131] = "GIMP 2.10.38"  # an editor: reported as what it says, not as AI
    (f,) = read_provenance(_encode(_noise(), "JPEG", exif=exif), max_bytes=MAX).metadata.fields
    assert f.value == "GIMP 2.10.38" and not f.declares_ai


def _xmp(source_type: str) -> bytes:
    return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
            f'Iptc4xmpExt:DigitalSourceType="{source_type}"/></rdf:RDF></x:xmpmeta>').encode()


def test_xmp_digital_source_type_in_jpeg():
    p = read_provenance(_encode(_noise(), "JPEG", xmp=_xmp(AI)), max_bytes=MAX)
    (f,) = p.metadata.fields
    assert (f.source, f.name, f.value, f.declares_ai) == ("XMP", "DigitalSourceType", "trainedAlgorithmicMedia", True)
    (f,) = read_provenance(_encode(_noise(), "JPEG", xmp=_xmp(CAPTURE)), max_bytes=MAX).metadata.fields
    assert f.value == "digitalCapture" and not f.declares_ai
    assert source_types(f"<Iptc4xmpExt:DigitalSourceType>{AI.replace('trained', 'compositeWithTrained')}"
                        "</Iptc4xmpExt:DigitalSourceType>") == ("compositeWithTrainedAlgorithmicMedia",)


# -- invisible watermark ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def face_512(shared_faces) -> np.ndarray:
    # One on which the reference embedder's output decodes cleanly (on some faces it does not: udfd/watermarks.py).
    path = shared_faces / "real" / "lfw" / "real_1023.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not in the shared data")
    return np.asarray(Image.open(path).convert("RGB").resize((512, 512), Image.BICUBIC))


def _sd_watermark(rgb: np.ndarray) -> np.ndarray:
    """What the Stable Diffusion reference scripts do to every output (scripts/txt2img.py)."""
    imwatermark = pytest.importorskip("imwatermark")
    encoder = imwatermark.WatermarkEncoder()
    encoder.set_watermark("bytes", b"StableDiffusionV1")
    return encoder.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")[:, :, ::-1]


def test_decoder_matches_the_reference_bit_for_bit(face_512):
    imwatermark = pytest.importorskip("imwatermark")
    marked = _sd_watermark(face_512)
    for img in (marked, face_512):
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        ref = np.array(imwatermark.WatermarkDecoder("bits", 136).decode(bgr, "dwtDct"), dtype=bool)
        assert np.array_equal(decode_bits(block_bits(np.ascontiguousarray(img)), 136), ref)


def test_sd_watermark_is_strong_evidence_and_decides_the_verdict(face_512):
    data = _encode(_sd_watermark(face_512))
    p = read_provenance(data, max_bytes=MAX)
    assert p.watermark.status == "found" and p.watermark.scheme == SCHEMES[0].name
    assert p.watermark.bit_errors <= SCHEMES[0].max_bit_errors and p.strong
    v = _verdict(data)
    assert all(f.label == "real" for f in v.faces)  # the detector's opinion is kept per face
    d = v.to_dict()
    assert d["overall"]["label"] == "fake" and d["overall"]["basis"] == "provenance"
    assert "StableDiffusionV1" in d["overall"]["evidence"][0]
    assert d["provenance"]["watermark"]["status"] == "found"
    assert any("provenance evidence" in n for n in d["notes"])


def test_plain_image_finds_nothing_and_the_detectors_decide(face_512):
    data = _encode(face_512)
    p = read_provenance(data, max_bytes=MAX)
    assert (p.c2pa.status, p.watermark.status, p.metadata.status) == ("absent", "absent", "absent")
    assert p.strong == p.reported == () and "not evidence of anything" in p.summary
    d = _verdict(data).to_dict()
    assert d["overall"]["basis"] == "detectors" and d["overall"]["label"] == "real"
    assert d["provenance"]["summary"].startswith("no provenance found")


def test_small_image_says_why_the_watermark_was_not_checked():
    w = read_provenance(_encode(_noise(64, 64)), max_bytes=MAX).watermark
    assert w.status == "not_checked" and "256" in w.reason


# -- C2PA ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain():
    """A throwaway root CA and an ES256 signer certificate it issued: (cert chain PEM, key PEM, root PEM)."""
    pytest.importorskip("c2pa")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "UDFD test")])

    def usage(ca):
        return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    base = x509.CertificateBuilder().not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(
        now + datetime.timedelta(days=30))
    root = (base.subject_name(name("UDFD test root")).issuer_name(name("UDFD test root"))
            .public_key(ca_key.public_key()).serial_number(1)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage(True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    leaf = (base.subject_name(name("UDFD test signer")).issuer_name(root.subject)
            .public_key(key.public_key()).serial_number(2)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + root.public_bytes(pem), key_pem, root.public_bytes(pem).decode()


def _sign(chain, data: bytes, mime: str, source_type: str, action: str = "c2pa.created") -> bytes:
    import c2pa

    certs, key, _ = chain
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs, key, None))
    manifest = {"claim_generator_info": [{"name": "udfd-test-generator", "version": "1.0"}], "title": "test",
                "assertions": [{"label": "c2pa.actions",
                                "data": {"actions": [{"action": action, "digitalSourceType": source_type}]}}]}
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png")])
def test_c2pa_ai_manifest_self_signed_is_reported_not_counted(chain, fmt, mime):
    signed = _sign(chain, _encode(_noise(), fmt), mime, AI)
    c = read_provenance(signed, max_bytes=MAX).c2pa
    assert c.status == "found" and c.declares_ai and c.digital_source_types == ("trainedAlgorithmicMedia",)
    assert c.claim_generator.startswith("udfd-test-generator") and c.actions == ("c2pa.created",)
    assert c.signer == "UDFD test"
    # exactly as the library reports it: intact ("Valid") but the signer chains to no trust anchor
    assert c.validation_state == "Valid" and any(f.startswith("signingCredential.untrusted")
                                                 for f in c.validation_failures)
    p = read_provenance(signed, max_bytes=MAX)
    assert p.strong == () and "not trusted" in p.reported[0]
    assert _verdict(signed).overall.basis == "detectors"


def test_c2pa_ai_manifest_from_a_trusted_signer_decides(chain, tmp_path, monkeypatch):
    signed = _sign(chain, _encode(_noise(), "JPEG"), "image/jpeg", AI)
    p = read_provenance(signed, max_bytes=MAX, trust_anchors=chain[2])
    assert p.c2pa.validation_state == "Trusted" and p.c2pa.validation_failures == () and p.strong
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(chain[2], encoding="utf-8")
    monkeypatch.setenv("UDFD_C2PA_TRUST_ANCHORS", str(anchors))
    o = _verdict(signed).overall
    assert (o.label, o.basis) == ("fake", "provenance") and "Trusted" in o.evidence[0]


def test_c2pa_plain_capture_is_not_evidence_of_anything(chain):
    signed = _sign(chain, _encode(_noise(), "JPEG"), "image/jpeg", CAPTURE)
    p = read_provenance(signed, max_bytes=MAX, trust_anchors=chain[2])
    assert p.c2pa.status == "found" and not p.c2pa.declares_ai and p.c2pa.validation_state == "Trusted"
    assert p.strong == ()
    assert _verdict(signed).overall.basis == "detectors"


def test_c2pa_tampered_file_fails_validation_and_counts_for_nothing(chain):
    original = _noise()
    signed = _sign(chain, _encode(original, "PNG"), "image/png", AI)
    im = Image.open(io.BytesIO(signed))
    tampered_pixels = original.copy()
    tampered_pixels[100:140, 100:140] = 0  # re-save with the manifest chunk kept, pixels changed
    info = PngImagePlugin.PngInfo()
    chunks = [c for c in _png_chunks(signed) if c[0] == b"caBX"]
    assert chunks, "the signed PNG carries its manifest in a caBX chunk"
    for _, body in chunks:
        info.add(b"caBX", body)
    tampered = _encode(tampered_pixels, "PNG", pnginfo=info)
    im.close()
    p = read_provenance(tampered, max_bytes=MAX, trust_anchors=chain[2])
    assert p.c2pa.status == "found" and p.c2pa.validation_state == "Invalid"
    assert any("mismatch" in f for f in p.c2pa.validation_failures), p.c2pa.validation_failures
    assert p.strong == ()


def _png_chunks(data: bytes):
    pos = 8
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        yield data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n


def test_random_manifest_bytes_give_an_error_entry_not_a_crash(chain):
    signed = bytearray(_sign(chain, _encode(_noise(), "JPEG"), "image/jpeg", AI))
    start = signed.find(b"jumb")
    signed[start + 64:start + 2064] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    p = read_provenance(bytes(signed), max_bytes=MAX)
    assert p.c2pa.status == "error" and p.c2pa.reason.startswith("manifest unreadable") and p.strong == ()
    assert p.metadata.status != "error" or p.metadata.reason  # the other readers still answer


# -- the rule, bad input, bounds --------------------------------------------------------------------------------
def test_rule_only_strong_evidence_changes_the_overall():
    o = Overall("real", 0.1, True, 0.5)
    assert apply_evidence(o, None) is o
    weak = Provenance(C2pa("found", validation_state="Invalid", declares_ai=True), Watermark("absent"),
                      Metadata("absent"), reported=("x",))
    assert apply_evidence(o, weak) is o
    strong = Provenance(C2pa("absent"), Watermark("found", scheme="s"), Metadata("absent"), strong=("wm",))
    after = apply_evidence(o, strong)
    assert (after.label, after.basis, after.evidence, after.fake_prob, after.uncertain) == (
        "fake", "provenance", ("wm",), 0.1, False)


@pytest.mark.parametrize("data", [os.urandom(4096), b"\x89PNG\r\n\x1a\n" + os.urandom(100), b"\xff\xd8\xff" + b"\0" * 9])
def test_bad_bytes_are_reported_never_raised(data):
    d = read_provenance(data, max_bytes=MAX).to_dict()
    for part in ("c2pa", "watermark", "metadata"):
        assert d[part]["status"] in ("not_checked", "error", "absent")
        if d[part]["status"] != "absent":
            assert d[part]["reason"]
    assert d["strong"] == []


def test_truncated_png_keeps_its_header_metadata():
    data = _png({"parameters": "Steps: 20, Sampler: Euler"})
    p = read_provenance(data[: len(data) // 2], max_bytes=MAX)
    assert p.metadata.status == "found" and p.watermark.status == "error" and p.watermark.reason


def test_limits_and_missing_files(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(_png({}))
    p = read_provenance(big, max_bytes=100)
    assert p.c2pa.status == "not_checked" and "limit of 100" in p.c2pa.reason
    assert read_provenance(tmp_path / "nope.jpg", max_bytes=MAX).metadata.status == "not_checked"
    assert read_provenance(b"", max_bytes=MAX).watermark.reason == "file is empty"


def test_a_huge_xmp_packet_is_answered_in_time():
    packet = b"<x:xmpmeta>" + b"A" * (8 * 1024 * 1024) + _xmp(AI) + b"</x:xmpmeta>"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode())
    t0 = time.perf_counter()
    p = read_provenance(_encode(_noise(), "PNG", pnginfo=info), max_bytes=MAX)
    assert time.perf_counter() - t0 < 3 * TIME_LIMIT_S
    assert p.metadata.status in ("absent", "error", "found")  # the marker lies past the scanned part: not found
    assert not any(f.declares_ai for f in p.metadata.fields)
    v = _verdict(_encode(_noise(), "PNG", pnginfo=info))  # and the verdict still arrives
    assert v.provenance is not None and v.overall.basis == "detectors"


# -- the command -------------------------------------------------------------------------------------------------
def test_cli_prints_provenance_only_and_imports_no_torch(tmp_path):
    a = tmp_path / "a1111.png"
    a.write_bytes(_png({"parameters": "Steps: 20, Sampler: Euler"}))
    (tmp_path / "junk.jpg").write_bytes(os.urandom(300))
    code = ("import sys, json; from udfd.cli.main import main; rc = main(['provenance', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    by_name = {os.path.basename(d["file"]): d for d in lines}
    assert set(by_name) == {"a1111.png", "junk.jpg"}
    assert by_name["a1111.png"]["metadata"]["fields"][0]["name"] == "parameters"
    assert set(by_name["junk.jpg"]) >= {"c2pa", "watermark", "metadata", "summary"} and "faces" not in by_name["a1111.png"]


def test_video_verdict_carries_provenance(tmp_path, face_rgb):
    from tests.conftest import face_clip, write_video
    from udfd.pipeline import analyze_video

    clip = write_video(tmp_path / "clip.mp4", face_clip(face_rgb, n=8))
    p = read_provenance(clip, max_bytes=MAX)
    assert p.c2pa.status in ("absent", "not_checked") and p.watermark.status == "not_checked"
    assert "video" in p.watermark.reason
    d = analyze_video(clip, settings=Settings(), detectors=[_SaysReal()]).to_dict()
    assert d["provenance"]["c2pa"]["status"] == p.c2pa.status and d["overall"]["basis"] == "detectors"
    assert "provenance" in d["timings_ms"]


def test_predict_json_carries_provenance_and_basis(tmp_path, tiny_vit_dir, monkeypatch, capsys):
    from udfd.cli.main import main
    from udfd.loader import clear_cache

    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    clear_cache()
    path = tmp_path / "comfy.png"
    path.write_bytes(_png({"prompt": "{}"}))
    assert main(["predict", str(path), "--json", "--detector", "vit"]) == 0
    d = json.loads(capsys.readouterr().out.splitlines()[0])
    assert d["overall"]["basis"] == "detectors" and d["overall"]["evidence"] == []
    assert d["provenance"]["metadata"]["fields"][0]["generator"] == "ComfyUI"
    assert d["provenance"]["reported"] and d["provenance"]["strong"] == []


def test_haar_band_equals_pywavelets_bit_for_bit():
    pywt = pytest.importorskip("pywt")
    from udfd.watermarks import haar_approximation

    x = np.random.default_rng(3).integers(0, 256, (64, 96)).astype(np.float64)
    assert np.array_equal(haar_approximation(x), pywt.dwt2(x, "haar")[0])


def test_a_stalled_reader_is_abandoned_and_the_verdict_still_arrives(monkeypatch, face_512):
    import udfd.provenance as prov

    def stall(data):
        time.sleep(3)
        return Metadata("absent")

    monkeypatch.setattr(prov, "TIME_LIMIT_S", 0.2)
    monkeypatch.setattr(prov, "read_metadata", stall)
    t0 = time.perf_counter()
    v = _verdict(_encode(face_512))
    assert time.perf_counter() - t0 < 2.5
    assert v.provenance.metadata.status == "error" and "did not finish" in v.provenance.metadata.reason
    assert v.overall.basis == "detectors"


def test_c2pa_in_a_video(chain, tmp_path, face_rgb):
    from tests.conftest import face_clip, write_video

    clip = write_video(tmp_path / "clip.mp4", face_clip(face_rgb, n=8))
    signed = tmp_path / "signed.mp4"
    signed.write_bytes(_sign(chain, clip.read_bytes(), "video/mp4", AI))
    p = read_provenance(signed, max_bytes=MAX, trust_anchors=chain[2])
    assert p.c2pa.status == "found" and p.c2pa.validation_state == "Trusted" and p.c2pa.declares_ai
    assert p.watermark.status == "not_checked" and p.strong


def test_decoded_pixels_are_reused_only_when_they_are_the_files_own(face_512):
    data = _encode(_sd_watermark(face_512))
    assert read_provenance(data, max_bytes=MAX, pixels=np.zeros((512, 512, 3), np.uint8)).watermark.status == "absent"
    assert read_provenance(data, max_bytes=MAX, pixels=np.zeros((256, 256, 3), np.uint8)).watermark.status == "found"


def test_watermark_survives_jpeg_90_without_chroma_subsampling_only(face_512):
    marked = _sd_watermark(face_512)
    p = read_provenance(_encode(marked, "JPEG", quality=90, subsampling=0), max_bytes=MAX)  # 4:4:4
    assert p.watermark.status == "found" and p.strong
    w = read_provenance(_encode(marked, "JPEG", quality=90), max_bytes=MAX).watermark  # Pillow's default 4:2:0
    assert w.status == "not_checked" and "subsampling" in w.reason


def test_a1111_jpeg_user_comment_and_whole_word_generator_names():
    from udfd.provenance import names_generator

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + "a man\nSteps: 30, Sampler: DPM++ 2M".encode("utf-16-be")
    (f,) = read_provenance(_encode(_noise(), "JPEG", exif=exif), max_bytes=MAX).metadata.fields
    assert (f.source, f.name, f.declares_ai) == ("EXIF", "UserComment", True) and "Steps: 30" in f.value
    assert names_generator("Google Imagen 3") == "imagen" and names_generator("Imagenomic Portraiture") == ""


def test_evidence_panel_names_the_evidence_and_escapes_file_text(face_512):
    from udfd.ui.evidence import evidence_markdown

    hostile = read_provenance(_png({"parameters": "<img src=x onerror=alert(1)> **x** Steps: 1, Sampler: a"}),
                              max_bytes=MAX)
    md = evidence_markdown(hostile)
    assert "<img" not in md and "&lt;img" in md and r"\*\*x\*\*" in md
    assert "AUTOMATIC1111" in md and "does not decide the label" in md
    strong = evidence_markdown(read_provenance(_encode(_sd_watermark(face_512)), max_bytes=MAX))
    assert "Strong evidence" in strong and "StableDiffusionV1" in strong
    plain = evidence_markdown(read_provenance(_encode(face_512), max_bytes=MAX))
    assert "not evidence of anything" in plain and "C2PA Content Credentials:** absent" in plain
    assert "not checked" in evidence_markdown(None)


def test_compare_carries_provenance():
    from udfd.pipeline import compare_image

    d = compare_image(_png({"workflow": "{}"}), detectors=[_SaysReal()], settings=Settings(), explain=False).to_dict()
    assert d["provenance"]["metadata"]["fields"][0]["generator"] == "ComfyUI" and "comparison" in d


def test_cli_trust_anchors_option(chain, tmp_path, capsys):
    from udfd.cli.main import main

    signed = tmp_path / "ai.jpg"
    signed.write_bytes(_sign(chain, _encode(_noise(), "JPEG"), "image/jpeg", AI))
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(chain[2], encoding="utf-8")
    assert main(["provenance", str(signed), "--trust-anchors", str(anchors)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["c2pa"]["validation_state"] == "Trusted" and d["strong"]
    assert main(["provenance", str(signed), "--trust-anchors", str(tmp_path / "missing.pem")]) == 2


def test_image_tab_shows_evidence_and_its_endpoint_json_carries_it(tmp_path, face_512):
    from udfd.ui.image import analyze

    path = tmp_path / "sd.png"
    path.write_bytes(_encode(_sd_watermark(face_512)))
    out = analyze(str(path), Settings(), [_SaysReal()])
    verdict, notes = out[3], out[4]
    assert verdict["provenance"]["watermark"]["status"] == "found" and verdict["overall"]["basis"] == "provenance"
    assert "### Evidence" in notes and "Strong evidence" in notes
    out = analyze(None, Settings(), [_SaysReal()], data=_png({"parameters": "Steps: 2, Sampler: x"}))
    assert out[3]["provenance"]["metadata"]["status"] == "found" and "AUTOMATIC1111" in out[4]


def test_video_tab_shows_evidence(tmp_path, face_rgb):
    from tests.conftest import face_clip, write_video
    from udfd.ui.video import analyze

    clip = write_video(tmp_path / "clip.mp4", face_clip(face_rgb, n=8))
    out = analyze(str(clip), Settings(), [_SaysReal()])
    assert "### Evidence" in out[-1] and out[-2]["provenance"]["watermark"]["status"] == "not_checked"
