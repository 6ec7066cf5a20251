"""Postfix restriction lists are checked word by word before a change is kept."""

from pathlib import Path

from labkit.mta.postfix import unknown_restrictions

STOCK = (Path(__file__).resolve().parents[1] / "data" / "debian12-stock-main.cf").read_text()


def as_postconf_n(text: str) -> str:
    """main.cf lines as `postconf -n` prints them (name = value)."""
    out = []
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out.append(f"{name.strip()} = {value.strip()}")
    return "\n".join(out)


def test_debian_stock_main_cf_has_no_unknown_restriction():
    assert unknown_restrictions(as_postconf_n(STOCK)) == []


def test_course_restrictions_are_known():
    conf = ("smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated, "
            "reject_unauth_destination, reject_rbl_client bl.lab.test, "
            "check_sender_access hash:/etc/postfix/sender_access, reject_rhsbl_sender rhsbl.lab.test\n"
            "smtpd_helo_restrictions = reject_non_fqdn_helo_hostname, reject_invalid_helo_hostname")
    assert unknown_restrictions(conf) == []


def test_a_misspelt_restriction_is_named_with_its_parameter():
    conf = "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destinaton"
    assert unknown_restrictions(conf) == [
        "smtpd_recipient_restrictions: unknown restriction 'reject_unauth_destinaton'"]


def test_restriction_classes_and_bare_tables_are_allowed():
    conf = ("smtpd_restriction_classes = strict\nstrict = reject_unknown_sender_domain\n"
            "smtpd_sender_restrictions = hash:/etc/postfix/senders, strict")
    assert unknown_restrictions(conf) == []
    assert unknown_restrictions("strict = reject_foo\nsmtpd_restriction_classes = strict") == [
        "strict: unknown restriction 'reject_foo'"]
