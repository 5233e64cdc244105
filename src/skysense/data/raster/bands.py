"""Which bands of a file are which.

- :func:`resolve_bands` — bands given by 1-based index or by description.
- :func:`sensor_bands` — a sensor's bands in the model's order, found by name: B-codes (zero-padded or not), STAC
  common names, polarisations (:func:`~skysense.data.sensors.canonical_band_name`). Names that are complete but
  shuffled are reordered; names missing a band are refused naming it; a file without names is read by position,
  with one warning saying so.
- :func:`hr_bands_from_tags` — red, green, blue (and near-infrared) of a high-resolution image from its tags, as
  follows.

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
import warnings
from collections.abc import Sequence

import numpy as np

from skysense.data.raster.info import RasterInfo
from skysense.data.sensors import HR_RGB, HR_RGBN, Sensor, canonical_band_name
from skysense.errors import InputError

BandSelection = Sequence[int | str]


def _normalize_band_name(name: str) -> str:
    """Case- and padding-insensitive band key: "b02" → "B2", "B8a" → "B8A", " vv " → "VV"."""
    key = name.strip().upper()
    if key.startswith("BAND_") or key.startswith("BAND "):
        return key.replace(" ", "_")
    if len(key) > 1 and key[0] == "B" and key[1:].lstrip("0")[:1].isdigit():
        key = "B" + key[1:].lstrip("0")
    return key


def resolve_bands(info: RasterInfo, bands: BandSelection | None) -> list[int]:
    """Band selection (1-based indexes and/or band names) → 1-based indexes.

    Names match the band descriptions exactly, else case- and zero-padding-insensitively ("b02" finds "B2");
    "band_<i>" always finds band i. ``None`` selects the data bands (alpha bands excluded).

    Raises:
        ValueError: an index out of range, an unknown or ambiguous name, naming the file and its bands.
    """
    if bands is None:
        return info.data_bands
    if isinstance(bands, (str, int)):
        bands = [bands]
    if len(bands) == 0:
        raise ValueError(f"{info.path}: empty band selection")
    names = info.band_names
    indexes = []
    for band in bands:
        if isinstance(band, (int, np.integer)) and not isinstance(band, bool):
            if not 1 <= band <= info.count:
                raise ValueError(
                    f"{info.path}: band {band} requested but the file has {info.count} bands (1-based indexes)"
                )
            indexes.append(int(band))
            continue
        if not isinstance(band, str):
            raise ValueError(f"{info.path}: bands are 1-based indexes or names, got {band!r}")
        exact = [i for i, n in enumerate(names, start=1) if n == band]
        if not exact:
            key = _normalize_band_name(band)
            exact = [i for i, n in enumerate(names, start=1) if _normalize_band_name(n) == key]
        if len(exact) != 1:
            problem = "no band named" if not exact else f"{len(exact)} bands named"
            raise ValueError(f"{info.path}: {problem} {band!r}; the file's bands are {list(names)}")
        indexes.append(exact[0])
    return indexes


def _few(values: Sequence, shown: int = 16) -> str:
    """A list as a message shows it: whole up to ``shown`` items, else the first ones and a count (a 206-band
    stack's names would make a line of kilobytes)."""
    values = list(values)
    if len(values) <= shown:
        return str(values)
    return f"{str(values[:shown])[:-1]}, … and {len(values) - shown} more]"


def sensor_bands(info: RasterInfo, sensor: Sensor) -> list[int]:
    """The 1-based indexes of ``sensor``'s bands, in the sensor's order.

    Band names (descriptions) identify bands by B-code (zero-padded or not), STAC common name ("red", "nir08",
    "swir16", ...) or polarisation (:func:`~skysense.data.sensors.canonical_band_name`):

    - names that identify every band of the sensor are used whatever their order (a shuffled stack is reordered;
      extra bands are ignored);
    - names that identify some bands but not all are refused, naming the missing ones (never filled by position);
    - only a file whose bands have no recognisable name at all is read by position, when it has exactly the
      sensor's number of data bands, and a warning says so.

    Raises:
        InputError: names that miss some of the sensor's bands, or a name on two bands, or no names and another
            number of bands — naming the file, its bands and the expected ones.
    """
    data = info.data_bands
    named: dict[str, list[int]] = {}
    for index in data:
        canonical = canonical_band_name(info.descriptions[index - 1])
        if canonical is not None:
            named.setdefault(canonical, []).append(index)
    wanted = [canonical_band_name(b) or b for b in sensor.bands]
    twice = {k: v for k, v in named.items() if len(v) > 1 and k in wanted}
    if twice:
        band, indexes = next(iter(twice.items()))
        raise InputError(
            f"{info.path}: bands {_few(indexes)} are all named {band} (names {_few(info.band_names)}); a file of "
            "several dates or sensors in one raster is not read: export one file per date, or fix the band "
            "descriptions so that each band is named once"
        )
    if named:
        missing = [b for b, w in zip(sensor.bands, wanted, strict=True) if w not in named]
        if missing:
            raise InputError(
                f"{info.path}: its band names {_few(info.band_names)} do not include {', '.join(missing)} of the "
                f"{len(sensor.bands)} {sensor.name} bands {list(sensor.bands)} ({sensor.units}); give a file with "
                "every band (named by B-code or STAC common name), or fix its band descriptions"
            )
        return [named[w][0] for w in wanted]
    if len(data) == len(sensor.bands):
        warnings.warn(
            f"{info.path}: its bands have no names; read by position as {', '.join(sensor.bands)} "
            f"({sensor.units}); name them in the band descriptions to be sure",
            stacklevel=2,
        )
        return data
    raise InputError(
        f"{info.path}: expected the {len(sensor.bands)} bands {list(sensor.bands)} of {sensor.name} "
        f"({sensor.units}), by band name or by count; found {len(data)} bands named {_few(info.band_names)}"
    )


_SILENT_COLOURS = frozenset({"undefined", "gray", "grey", "palette"})


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
        info: the file's metadata (:func:`~skysense.data.raster.raster_info`).
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
