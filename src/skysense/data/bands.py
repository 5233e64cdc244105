"""Which bands of a high-resolution (HR) image are red, green, blue (and near-infrared), read from the file's own
tags, so that a BGR file is not fed to the model as RGB.

The HR encoder takes its bands in the order of :data:`~skysense.data.sensors.HR_RGB` (red, green, blue) or
:data:`~skysense.data.sensors.HR_RGBN` (red, green, blue, nir). :func:`hr_bands_from_tags` reads each band's
identity from two tags and applies these rules:

1. **Identity.** A band's *colour interpretation* (GDAL's: ``red``, ``green``, ``blue``, ``nir``, ``alpha``, and
   the other named ones such as ``pan``, ``rededge``, ``swir``, ``hue``, ``cyan``, ``Y``) names it; ``gray``,
   ``undefined`` and ``palette`` say nothing. Its *description* names it when it is a plain band name: ``red``,
   ``green``, ``blue``, ``nir`` (also ``nir08``, ``nir09``, ``near-infrared``, ``near infrared``) or another STAC
   common name (``coastal``, ``yellow``, ``pan``, ``rededge``, ``cirrus``, ``swir16``, ``swir22``, ``lwir``,
   ``lwir11``, ``lwir12``), ignoring case, spaces, ``-`` and ``_``. Any other description (free text such as
   ``"Band 1"``; Sentinel-2 codes such as ``B04``, which name a sensor's band, not a colour) says nothing.
2. **Contradictions are refused**: a band whose colour interpretation and description name different bands, one of
   them a model band (``red`` vs ``blue``; ``swir`` vs ``swir16`` is no contradiction); or a model band named on
   two bands.
3. **No identity → position.** When no band is identified, the function returns None and the caller reads the
   first data bands in order, as before.
4. **Every model band identified → the tags.** Their 1-based indexes in the model's order (a BGR file gives
   ``[3, 2, 1]``), wherever the bands are in the file.
5. **Some identified → position, only if it agrees.** Reading by position takes the first ``channels`` data bands
   (alpha bands excluded). It is used when every one of them is untagged or tagged as the model band of its
   position, and every tagged model band sits at its position (e.g. red, green, blue, undefined for RGB+NIR).
   Otherwise — band 1 tagged blue while red is not identified, say — it is refused.

Every refusal is an :class:`~skysense.errors.InputError` naming the file and every band's tags, with the fix:
correct the tags, or give the bands in the model's order with ``--hr-bands``. Under rule 5 the message suggests the
indexes the tags point to, with the untagged bands in order for the rest, and says what that assumes
(``--hr-bands 3,2,1,4 if band 4 is nir``). With ``--hr-bands`` the tags are not consulted.

A caveat the tags cannot fix: GDAL tags a 3- or 4-band byte GeoTIFF red, green, blue[, alpha] by default, so a file
written in BGR order by a tool that never set the tags reads as RGB, exactly as it does by position.
"""

from __future__ import annotations

import re

from skysense.data.readers import RasterInfo
from skysense.data.sensors import HR_RGB, HR_RGBN
from skysense.errors import InputError

# Colour interpretations that name nothing (GDAL's defaults for a band of unknown meaning)
_SILENT_COLOURS = frozenset({"undefined", "gray", "grey", "palette"})
# Plain band names a description may hold (normalised: lower case, "-"/"_" as spaces) → identity
_DESCRIPTION_NAMES = {
    "red": "red",
    "green": "green",
    "blue": "blue",
    "nir": "nir",
    "nir08": "nir",
    "nir09": "nir",
    "near infrared": "nir",
    "coastal": "coastal",
    "yellow": "yellow",
    "pan": "pan",
    "panchromatic": "pan",
    "rededge": "rededge",
    "red edge": "rededge",
    "cirrus": "cirrus",
    "swir16": "swir",
    "swir22": "swir",
    "swir": "swir",
    "lwir": "lwir",
    "lwir11": "lwir",
    "lwir12": "lwir",
    "alpha": "alpha",
}


def _model_bands(channels: int) -> tuple[str, ...]:
    if channels == 3:
        return HR_RGB.bands
    if channels == 4:
        return HR_RGBN.bands
    raise ValueError(f"the HR encoder takes {channels} channels; only RGB (3) and RGB+NIR (4) have band names")


def _colour_identity(colour: str) -> str | None:
    name = colour.lower()
    return None if name in _SILENT_COLOURS else name


def _description_identity(description: str | None) -> str | None:
    if not description:
        return None
    key = re.sub(r"[\s_-]+", " ", description.strip().lower())
    return _DESCRIPTION_NAMES.get(key)


def _tags_text(info: RasterInfo) -> str:
    """``"1=blue, 2=green, 3=red 'Red band'"``: every band's colour interpretation and description."""
    parts = []
    for index, (colour, description) in enumerate(zip(info.colorinterp, info.descriptions, strict=True), start=1):
        parts.append(f"{index}={colour}" + (f" {description!r}" if description else ""))
    return ", ".join(parts)


def _fix(model: tuple[str, ...], suggestion: list[int] | None = None, condition: str = "") -> str:
    order = ", ".join(model)
    if suggestion is not None:
        example = f"--hr-bands {','.join(map(str, suggestion))}{condition}"
        return f"fix the file's tags, or give the bands in the model's order ({order}) with --hr-bands, e.g. {example}"
    return (
        f"fix the file's tags, or give the bands in the model's order ({order}) with --hr-bands and their 1-based "
        "indexes (e.g. --hr-bands 3,2,1 for a blue, green, red file)"
    )


def hr_bands_from_tags(info: RasterInfo, channels: int) -> list[int] | None:
    """The HR image's bands in the model's order (red, green, blue[, nir]), from its colour interpretation and band
    descriptions (the rules are in the module's docstring).

    Args:
        info: the file's metadata (:func:`~skysense.data.readers.raster_info`).
        channels: the HR encoder's input channels: 3 (RGB) or 4 (RGB+NIR).

    Returns:
        1-based band indexes in the model's order; None when no band carries an identity (read by position).

    Raises:
        InputError: naming the file, every band's tags and the fix (``--hr-bands …``), when the tags contradict
            each other or the model's order as position would read it.
        ValueError: ``channels`` is not 3 or 4.
    """
    model = _model_bands(channels)
    tags = _tags_text(info)
    identities: list[str | None] = []
    for index, (colour, description) in enumerate(zip(info.colorinterp, info.descriptions, strict=True), start=1):
        by_colour, by_description = _colour_identity(colour), _description_identity(description)
        if by_colour and by_description and by_colour != by_description and {by_colour, by_description} & set(model):
            raise InputError(
                f"{info.path}: band {index}'s colour interpretation says {by_colour} but its description "
                f"{description!r} says {by_description} (bands: {tags}); {_fix(model)}"
            )
        identities.append(by_colour or by_description)

    located: dict[str, int] = {}
    for index, identity in enumerate(identities, start=1):
        if identity in model:
            if identity in located:
                raise InputError(
                    f"{info.path}: bands {located[identity]} and {index} are both tagged {identity} (bands: {tags}); "
                    f"{_fix(model)}"
                )
            located[identity] = index
    if all(name in located for name in model):
        return [located[name] for name in model]
    data_bands = info.data_bands
    if not any(identities[band - 1] for band in data_bands):
        return None  # the file says nothing: position, as before
    positional = data_bands[:channels]
    if len(positional) < channels:
        return None  # too few data bands: the caller's band-count check says so
    problem = None
    for band, name in zip(
        positional, model, strict=False
    ):  # each band position would read: untagged, or tagged as its slot
        identity = identities[band - 1]
        if identity is not None and identity != name:
            problem = f"reading by position would put band {band} ({identity}) where the model expects {name}"
            break
    for name, band in located.items():  # each tagged model band: where position would read it
        if problem is None and positional[model.index(name)] != band:
            problem = f"reading by position would not take band {band} ({name}) as {name}"
    if problem is None:
        return positional
    missing = [name for name in model if name not in located]
    untagged = [band for band in data_bands if identities[band - 1] is None]
    suggestion, condition = None, ""
    if len(untagged) >= len(missing):  # the tagged bands where the tags say, untagged ones (in order) for the rest
        guessed = dict(zip(missing, untagged, strict=False))
        suggestion = [located.get(name) or guessed[name] for name in model]
        condition = " if " + " and ".join(f"band {guessed[name]} is {name}" for name in missing)
    raise InputError(
        f"{info.path}: the bands' tags ({tags}) leave {', '.join(missing)} unidentified, and {problem}; "
        f"{_fix(model, suggestion, condition)}"
    )
