"""Weight formats read from file names, and the files chosen by default."""

from __future__ import annotations

import pytest

from smolchat.models.formats import (
    FORMATS,
    default_projector_file,
    default_text_file,
    format_name,
    is_projector,
    parse_format,
)

MB = 1 << 20

# ggml-org/SmolVLM-256M-Instruct-GGUF
GGML_ORG_256M = {
    "SmolVLM-256M-Instruct-f16.gguf": 328 * MB,
    "SmolVLM-256M-Instruct-Q8_0.gguf": 175 * MB,
    "mmproj-SmolVLM-256M-Instruct-f16.gguf": 190 * MB,
    "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf": 104 * MB,
}
# A community repo with many formats and hybrids (laid out like Mungert's)
MANY = {
    f"SmolVLM-256M-Instruct-{q}.gguf": 100 * MB
    for q in ("bf16", "f16", "q8_0", "q6_k", "q4_k_m", "q4_0", "iq3_xs", "iq2_m", "iq1_s", "bf16_q8_0", "f16_q4_k")
} | {"SmolVLM-256M-Instruct-bf16-mmproj.gguf": 190 * MB, "SmolVLM-256M-Instruct-q8_0-mmproj.gguf": 104 * MB}


@pytest.mark.parametrize(
    "filename, expected",
    [
        ("SmolVLM-256M-Instruct-Q8_0.gguf", "Q8_0"),
        ("SmolVLM-256M-Instruct-f16.gguf", "F16"),
        ("mmproj-SmolVLM-256M-Instruct-f16.gguf", "F16"),
        ("SmolVLM2-2.2B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("SmolVLM-256M-Instruct-q4_k.gguf", "Q4_K"),
        ("SmolVLM-256M-Instruct-iq3_xxs.gguf", "IQ3_XXS"),
        ("SmolVLM-256M-Instruct-iq3_xs.gguf", "IQ3_XS"),
        ("SmolVLM-256M-Instruct-bf16.gguf", "BF16"),
        ("SmolVLM-256M-Instruct-bf16_q8_0.gguf", "BF16+Q8_0"),
        ("SmolVLM-256M-Instruct-f16_q4_k.gguf", "F16+Q4_K"),
        ("SmolVLM-256M-Instruct-bf16-mmproj.gguf", "BF16"),
        ("subfolder/SmolVLM-500M-Instruct-Q5_K_M.gguf", "Q5_K_M"),
    ],
)
def test_format_from_the_file_name(filename, expected):
    assert parse_format(filename).name == expected


@pytest.mark.parametrize("filename", ["README.md", "SmolVLM-256M-Instruct.gguf", "model-Q8_0.bin"])
def test_names_without_a_format(filename):
    assert parse_format(filename) is None


def test_a_format_name_is_a_question_mark_where_the_file_name_states_none():
    assert format_name("subfolder/SmolVLM-500M-Instruct-Q5_K_M.gguf") == "Q5_K_M"
    assert format_name("SmolVLM-256M-Instruct.gguf") == "?"


def test_every_format_says_what_it_trades():
    for fmt in FORMATS.values():
        assert 1 < fmt.bits_per_weight <= 32 and len(fmt.summary) > 30
    hybrid = parse_format("x-bf16_q8_0.gguf")
    assert "Q8_0" in hybrid.summary and "BF16" in hybrid.summary
    assert FORMATS["Q8_0"].bits_per_weight < hybrid.bits_per_weight < FORMATS["BF16"].bits_per_weight


def test_projectors_are_told_apart_from_text_models():
    assert is_projector("mmproj-SmolVLM-256M-Instruct-f16.gguf")
    assert is_projector("SmolVLM-256M-Instruct-bf16-mmproj.gguf")
    assert not is_projector("SmolVLM-256M-Instruct-Q8_0.gguf")


def test_defaults_for_the_official_repo():
    assert default_text_file(GGML_ORG_256M) == "SmolVLM-256M-Instruct-Q8_0.gguf"
    assert default_projector_file(GGML_ORG_256M) == "mmproj-SmolVLM-256M-Instruct-f16.gguf"


def test_defaults_for_a_repo_with_many_formats():
    assert default_text_file(MANY) == "SmolVLM-256M-Instruct-q8_0.gguf"  # small model: Q8_0
    assert default_projector_file(MANY) == "SmolVLM-256M-Instruct-bf16-mmproj.gguf"  # no F16 mmproj


def test_a_large_model_defaults_to_q4_k_m():
    files = {
        "SmolVLM2-2.2B-Instruct-Q8_0.gguf": 1900 * MB,
        "SmolVLM2-2.2B-Instruct-Q4_K_M.gguf": 1100 * MB,
        "mmproj-SmolVLM2-2.2B-Instruct-f16.gguf": 870 * MB,
        "mmproj-SmolVLM2-2.2B-Instruct-Q8_0.gguf": 470 * MB,
    }
    assert default_text_file(files) == "SmolVLM2-2.2B-Instruct-Q4_K_M.gguf"
    assert default_projector_file(files) == "mmproj-SmolVLM2-2.2B-Instruct-f16.gguf"


def test_a_repo_with_only_low_bit_formats_gets_the_most_precise():
    files = {"m-iq2_m.gguf": MB, "m-q3_k_m.gguf": MB, "m-iq1_s.gguf": MB}
    assert default_text_file(files) == "m-q3_k_m.gguf"
    assert default_projector_file(files) is None
