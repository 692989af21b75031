"""The Olist marketing funnel as files `leadscore import` reads (docs/funnel.md#olist).

    python docs/examples/olist_funnel.py [--data ../shared/data/olist] [--out olist-import]
    leadscore import --leads olist-import/leads.csv --stages olist-import/stages.csv
    leadscore report funnel --by source

Olist published 8,000 marketing-qualified leads of its marketplace (sellers, 2017-06 to
2018-05: `mql_id`, `first_contact_date`, `landing_page_id`, `origin`) and the 842 of them that
closed (`mql_id`, `sdr_id`, `won_date`, …). This turns them into:

- leads.csv: `lead_id` (the mql_id), `source` (the origin; blank when Olist has none),
  `utm_campaign` (the landing page: the report's campaign), `owner` (the SDR who worked a closed
  deal; Olist names no SDR for the others), `first_contact_date`;
- stages.csv: a move to `mql` at the first contact date (midnight UTC), and for each closed deal
  a move to `customer` at its won date (taken as UTC: Olist gives no zone), by the SDR.

Nothing is dropped or corrected here: one deal is dated before its lead's first contact, and
the import keeps that row in the stage history but in no MQL episode (it says so), so the funnel
counts 841 customers. The closed-deal columns (segment, lead type, revenue…) exist only for
won leads and would leak the outcome, so they are not made traits.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "olist"
MQLS = "olist_marketing_qualified_leads_dataset.csv"
DEALS = "olist_closed_deals_dataset.csv"


def convert(data: Path, out: Path) -> tuple[Path, Path]:
    """Write leads.csv and stages.csv into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    with (data / DEALS).open(newline="", encoding="utf-8") as f:
        deals = {row["mql_id"]: row for row in csv.DictReader(f)}
    leads, stages = out / "leads.csv", out / "stages.csv"
    with (
        (data / MQLS).open(newline="", encoding="utf-8") as f,
        leads.open("w", newline="", encoding="utf-8") as lf,
        stages.open("w", newline="", encoding="utf-8") as sf,
    ):
        lw, sw = csv.writer(lf), csv.writer(sf)
        lw.writerow(["lead_id", "source", "utm_campaign", "owner", "first_contact_date"])
        sw.writerow(["lead_id", "stage", "at", "by", "reason"])
        for row in csv.DictReader(f):
            deal = deals.get(row["mql_id"])
            lw.writerow(
                [
                    row["mql_id"],
                    row["origin"],
                    row["landing_page_id"],
                    deal["sdr_id"] if deal else "",
                    row["first_contact_date"],
                ]
            )
            sw.writerow([row["mql_id"], "mql", row["first_contact_date"], "", "first contact"])
            if deal:
                sw.writerow([row["mql_id"], "customer", deal["won_date"], deal["sdr_id"], "won"])
    return leads, stages


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the folder of Olist's CSV files"
    )
    ap.add_argument("--out", type=Path, default=Path("olist-import"), help="where to write")
    args = ap.parse_args()
    leads, stages = convert(args.data, args.out)
    print(f"wrote {leads} and {stages}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
