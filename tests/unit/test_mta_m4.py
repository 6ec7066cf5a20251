"""Editing sendmail.mc as m4, on Debian 12's stock file and the lab's baseline."""

from pathlib import Path

import pytest

from labkit.errors import LabkitError
from labkit.mta.m4 import McFile, McSyntaxError, quote, unquote

DATA = Path(__file__).resolve().parents[1] / "data"
STOCK = (DATA / "debian12-stock-sendmail.mc").read_text()
BASELINE = (Path(__file__).resolve().parents[2] / "vagrant/provision/files/relay/sendmail.mc").read_text()


@pytest.mark.parametrize("text", [STOCK, BASELINE], ids=["debian-stock", "lab-baseline"])
def test_unchanged_file_reads_back_byte_for_byte(text):
    assert str(McFile(text)) == text


def test_reads_debian_stock_settings():
    mc = McFile(STOCK)
    # this define spans two lines with a dnl between its arguments
    assert mc.get_define("confPRIVACY_FLAGS") == (
        "needmailhelo,needexpnhelo,needvrfyhelo,restrictqrun,restrictexpand,nobodyreturn,authwarnings")
    assert mc.get_define("confCONNECTION_RATE_THROTTLE") == "15"
    assert mc.get_define("confHOST_STATUS_DIRECTORY") is None  # undefined
    assert mc.features()["access_db"] == ("", "skip")
    assert mc.features()["greet_pause"] == ("1000",)
    assert mc.mailers() == ["local", "smtp"]
    assert "Addr=127.0.0.1" in mc.daemon_options()[0]


def test_commented_out_lines_are_not_settings():
    mc = McFile(STOCK)  # "dnl DAEMON_OPTIONS(`Family=inet6, ...')" lines are comments
    assert all("inet6" not in d for d in mc.daemon_options())


def test_set_define_replaces_in_place_and_keeps_everything_else():
    mc = McFile(STOCK)
    mc.set_define("confPRIVACY_FLAGS", "goaway")
    lines_before, lines_after = STOCK.splitlines(), str(mc).splitlines()
    assert "define(`confPRIVACY_FLAGS', `goaway')dnl" in lines_after
    assert len(lines_after) == len(lines_before) - 1  # the two-line define became one line
    assert [ln for ln in lines_before if "PRIVACY" not in ln and not ln.startswith("`need")] == \
        [ln for ln in lines_after if "PRIVACY" not in ln]
    assert McFile(str(mc)).get_define("confPRIVACY_FLAGS") == "goaway"


def test_new_define_and_feature_go_before_the_mailers():
    mc = McFile(BASELINE)
    mc.set_define("confMAX_MESSAGE_SIZE", "10000000")
    mc.add_feature("smrsh")
    macros = [s.macro for s in McFile(str(mc)).statements if s.macro]
    assert macros.index("FEATURE", macros.index("define", 10)) < macros.index("MAILER_DEFINITIONS")
    assert macros[-3:] == ["MAILER_DEFINITIONS", "MAILER", "MAILER"]


def test_feature_with_arguments_and_nested_quotes():
    mc = McFile(BASELINE)
    mc.add_feature("dnsbl", "bl.lab.test", '"550 Rejected: " $&{client_addr} " is listed"')
    again = McFile(str(mc))
    assert again.features()["dnsbl"] == ("bl.lab.test", '"550 Rejected: " $&{client_addr} " is listed"')
    mc.add_feature("dnsbl", "bl.lab.test")  # same feature again: replaced, not doubled
    assert str(mc).count("FEATURE(`dnsbl'") == 1


def test_greeting_with_m4_quotes_inside_survives():
    mc = McFile(BASELINE)
    mc.set_define("confSMTP_LOGIN_MSG", "$j MTA; `quoted' $b")
    assert McFile(str(mc)).get_define("confSMTP_LOGIN_MSG") == "$j MTA; `quoted' $b"


def test_unbalanced_quote_in_a_value_is_refused():
    with pytest.raises(LabkitError, match="do not pair up"):
        quote("it's")


def test_unclosed_quote_in_the_file_names_its_line():
    with pytest.raises(McSyntaxError, match="line 2: define: unclosed quote"):
        McFile("dnl\ndefine(`confX', `oops)dnl\nMAILER(`smtp')dnl\n")


def test_remove_and_undefine():
    mc = McFile(STOCK)
    assert mc.remove_feature("greet_pause")
    assert not mc.has_feature("greet_pause")
    mc.undefine("confCONNECTION_RATE_THROTTLE")
    assert mc.get_define("confCONNECTION_RATE_THROTTLE") is None
    assert "undefine(`confCONNECTION_RATE_THROTTLE')dnl" in str(mc)
    assert not mc.remove_feature("not_there")


def test_daemon_options_replaced_by_name():
    mc = McFile(STOCK)
    mc.set_daemon_options("MTA-v4", "Family=inet, Name=MTA-v4, Port=smtp")
    assert mc.daemon_options()[0] == "Family=inet, Name=MTA-v4, Port=smtp"
    assert "Addr=127.0.0.1" in mc.daemon_options()[1]  # MSP-v4 untouched


def test_unquote():
    assert unquote(" `a, b' ") == "a, b"
    assert unquote("plain") == "plain"


def test_a_mail_filter_is_added_once_and_replaced_in_place():
    mc = McFile(BASELINE)
    mc.set_mail_filter("labkit", "S=inet:8894@127.0.0.1, F=T")
    again = McFile(str(mc))
    again.set_mail_filter("labkit", "S=inet:8894@127.0.0.1, F=R")
    assert again.mail_filters() == {"labkit": "S=inet:8894@127.0.0.1, F=R"}
    assert str(again).count("INPUT_MAIL_FILTER(") == 1
    assert str(again).index("INPUT_MAIL_FILTER(") < str(again).index("MAILER(")
