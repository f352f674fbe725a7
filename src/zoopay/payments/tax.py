"""Whether billing information is complete enough to tax: a known country, a postal code of
that country's form (where it has postal codes), and an EU VAT id, when given, valid by its
checksum (python-stdnum, offline) and of the billing country."""

import re

from stdnum.eu import vat

from zoopay.payments.service import PaymentCustomer

# ISO 3166-1 alpha-2, as Stripe takes them.
COUNTRY_CODES = frozenset(
    """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split()  # noqa: SIM905 (a table, kept readable)
)

# Countries that use no postal codes: an address there is complete without one.
NO_POSTAL_CODES = frozenset(
    """
AE AG AO AW BF BI BJ BO BS BW BZ CD CF CG CI CK CM DJ DM ER FJ GA GD GH GM GQ GY HK KI KM KN KP
LY ML MO MR MW NR NU QA RW SB SC SL SR SS ST SY TD TF TG TK TL TO TV UG VU YE ZW
""".split()  # noqa: SIM905 (a table, kept readable)
)

_POSTAL = {
    "US": r"\d{5}(-\d{4})?",
    "CA": r"[A-Z]\d[A-Z] ?\d[A-Z]\d",
    "GB": r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}",
    "DE": r"\d{5}",
    "FR": r"\d{5}",
    "IT": r"\d{5}",
    "ES": r"\d{5}",
    "NL": r"\d{4} ?[A-Z]{2}",
    "BE": r"\d{4}",
    "AT": r"\d{4}",
    "CH": r"\d{4}",
    "DK": r"\d{4}",
    "NO": r"\d{4}",
    "AU": r"\d{4}",
    "SE": r"\d{3} ?\d{2}",
    "FI": r"\d{5}",
    "PL": r"\d{2}-\d{3}",
    "PT": r"\d{4}-\d{3}",
    "IE": r"[A-Z]\d[\dW] ?[A-Z\d]{4}",
    "JP": r"\d{3}-?\d{4}",
    "IN": r"\d{6}",
    "BR": r"\d{5}-?\d{3}",
}
# Elsewhere: letters, digits, spaces and dashes.
_ANY_POSTAL = r"[A-Z\d][A-Z\d \-]{1,9}"

# The EU's VAT prefixes that are not the country's ISO code.
_VAT_COUNTRY = {"EL": "GR", "XI": "GB"}


def postal_code_valid(country: str, postal_code: str) -> bool:
    pattern = _POSTAL.get(country, _ANY_POSTAL)
    return re.fullmatch(pattern, postal_code.strip().upper()) is not None


def vat_id_valid(vat_id: str) -> bool:
    return bool(vat.is_valid(vat_id))


def normalized_vat_id(vat_id: str) -> str:
    return str(vat.compact(vat_id))


def vat_country(vat_id: str) -> str:
    prefix = normalized_vat_id(vat_id)[:2].upper()
    return _VAT_COUNTRY.get(prefix, prefix)


def tax_problems(record: PaymentCustomer | None) -> list[str]:
    """What is missing or wrong for automatic tax; empty when the customer can be taxed."""
    if record is None or record.billing_info_at is None:
        return ["no billing information: a billing address (its country and postal code) is needed"]
    address = record.details.address
    if address is None:
        return ["the billing address is missing (its country and postal code)"]
    problems = []
    if address.country not in COUNTRY_CODES:
        problems.append(f"the country {address.country!r} is not an ISO 3166-1 alpha-2 code")
    elif address.country not in NO_POSTAL_CODES:
        if not address.zip:
            problems.append(f"the postal code (zip) is missing; {address.country} uses them")
        elif not postal_code_valid(address.country, address.zip):
            problems.append(f"the postal code {address.zip!r} is not one of {address.country}")
    if record.vat_id is not None:
        if not vat_id_valid(record.vat_id):
            problems.append(f"the VAT id {record.vat_id!r} is not valid")
        elif vat_country(record.vat_id) != address.country:
            problems.append(
                f"the VAT id {record.vat_id!r} is not of the billing country {address.country}"
            )
    return problems
