"""Safe configuration of the real MTAs: a good change applies, a broken one is refused
with the tool's own lines and the MTA keeps serving with its previous configuration."""

import pytest

from labkit.mta.apply import ConfigRejected
from labkit.mta.postfix import Postfix
from labkit.mta.sendmail import Sendmail

pytestmark = pytest.mark.lab


@pytest.fixture
def relay(lab):
    yield Sendmail(lab.engine, "relay")
    lab.reset("relay")


@pytest.fixture
def server(lab):
    yield Postfix(lab.engine, "server")
    lab.reset("server")


def vrfy(lab, vantage, target):
    with lab.smtp(vantage, target) as s:
        s.ehlo()
        return s.vrfy("root" if target == "relay" else "jo")


def test_sendmail_change_applies_and_reports_what_changed_in_sendmail_cf(lab, relay):
    result = relay.change(lambda mc: mc.set_define("confPRIVACY_FLAGS", "novrfy,noexpn"))
    assert result.ok
    assert "-O PrivacyOptions=public" in result.changes
    assert "+O PrivacyOptions=novrfy,noexpn" in result.changes
    reply = vrfy(lab, "internet", "relay")
    assert (reply.code, reply.enhanced) == (252, "2.5.2")


def test_sendmail_misspelt_feature_is_refused_with_m4s_own_line(lab, relay):
    before = lab.read_file("relay", "/etc/mail/sendmail.cf")
    with pytest.raises(ConfigRejected) as err:
        relay.change(lambda mc: mc.add_feature("no_such_feature_x"))
    result = err.value.result
    assert result.stage == "m4"
    assert any("no_such_feature_x.m4" in e and e.startswith("m4:sendmail.mc:") for e in result.errors)
    assert any("FEATURE(`no_such_feature_x')" in h for h in result.hints)
    assert lab.read_file("relay", "/etc/mail/sendmail.cf") == before
    assert vrfy(lab, "internet", "relay").code == 250  # still serving, as before


def test_sendmail_bad_option_value_is_traced_to_its_define(lab, relay):
    with pytest.raises(ConfigRejected) as err:
        relay.change(lambda mc: mc.set_define("confPRIVACY_FLAGS", "novrfy,bogusflag"))
    result = err.value.result
    assert result.stage == "cf"
    assert any("bogusflag unrecognized" in e for e in result.errors)
    assert any("confPRIVACY_FLAGS" in h and "sendmail.mc line" in h for h in result.hints)
    assert vrfy(lab, "internet", "relay").code == 250


def test_sendmail_hand_edit_with_unclosed_quote_is_refused_and_kept(lab, relay):
    good = lab.read_file("relay", "/etc/mail/sendmail.mc")
    lab.write_file("relay", "/etc/mail/sendmail.mc",
                   good + "define(`confSMTP_LOGIN_MSG', `$j oops)dnl\n")  # the ' is missing
    broken = lab.read_file("relay", "/etc/mail/sendmail.mc")
    result = relay.apply_hand_edits(check=False)
    assert not result.ok
    assert lab.read_file("relay", "/etc/mail/sendmail.mc") == good  # last good back in place
    assert lab.read_file("relay", "/etc/mail/sendmail.mc.rejected") == broken  # nothing lost
    assert vrfy(lab, "internet", "relay").code == 250


def test_sendmail_good_hand_edit_is_applied(lab, relay):
    mc = lab.read_file("relay", "/etc/mail/sendmail.mc")
    mc = mc.replace("define(`confPRIVACY_FLAGS', `public')dnl",
                    "define(`confPRIVACY_FLAGS', `goaway')dnl")
    lab.write_file("relay", "/etc/mail/sendmail.mc", mc)  # as a learner's editor would
    result = relay.apply_hand_edits()
    assert result.ok and "+O PrivacyOptions=goaway" in result.changes
    assert vrfy(lab, "internet", "relay").code == 252


def test_sendmail_run_as_user_without_the_hand_over_is_applied_with_warnings(lab, relay):
    # smmta may not create the control socket in root's /run/sendmail/mta: Sendmail
    # still serves, and says so in its log, which the result carries.
    result = relay.change(lambda mc: mc.set_define("confRUN_AS_USER", "smmta:smmsp"))
    assert result.ok and "+O RunAsUser=smmta:smmsp" in result.changes
    assert any("control socket" in w and "Permission denied" in w for w in result.warnings)
    assert "WARNING: " in str(result)


def test_sendmail_run_as_user_hands_over_what_the_sessions_need(lab, relay):
    result = relay.set_run_as_user("smmta", "smmsp")
    assert result.ok and result.warnings == []
    assert relay.run_as_user() == "smmta:smmsp"
    assert lab.session_users("relay", vantage="internet").session == ("smmta",)
    queue = lab.file_info("relay", "/var/spool/mqueue")
    assert (queue.owner, queue.octal) == ("smmta", "0700")
    assert lab.auth("internet", "relay").logins["CRAM-MD5"].code == 235  # sasldb readable
    assert lab.send("internet", "jo@example.com").status == "delivered"


def test_postfix_change_applies(lab, server):
    result = server.set(disable_vrfy_command="yes", smtpd_banner="$myhostname ESMTP")
    assert "+disable_vrfy_command = yes" in result.changes
    reply = vrfy(lab, "client", "server")
    assert (reply.code, reply.enhanced) == (502, "5.5.1")
    with lab.smtp("client", "server") as s:
        assert s.greeting.text.startswith("server.example.com ESMTP") and "Postfix" not in s.greeting.text


def test_postfix_misspelt_parameter_is_refused(lab, server):
    with pytest.raises(ConfigRejected) as err:
        server.set(disable_vrfy_comand="yes")
    assert err.value.result.stage == "check"
    assert "unused parameter: disable_vrfy_comand=yes" in err.value.result.errors[0]
    assert server.get("disable_vrfy_command") == "no"


def test_postfix_unknown_restriction_is_refused_even_behind_permit_mynetworks(lab, server):
    with pytest.raises(ConfigRejected) as err:
        server.set(smtpd_recipient_restrictions="permit_mynetworks, reject_bogus_thing")
    assert "unknown restriction 'reject_bogus_thing'" in err.value.result.errors[0]
    assert "reject_bogus_thing" not in server.get("smtpd_recipient_restrictions")
    assert vrfy(lab, "client", "server").code == 252


def test_postfix_restriction_that_breaks_sessions_is_refused_at_the_serving_step(lab, server):
    with pytest.raises(ConfigRejected) as err:
        server.set(smtpd_recipient_restrictions="check_recipient_access hash:/etc/postfix/nothere")
    result = err.value.result
    assert result.stage == "serving"
    assert any("4.3.0" in e or "4.3.5" in e or "nothere" in e for e in result.errors)
    assert lab.send("client", "jo@example.com", target="server").status == "delivered"


def test_postfix_header_checks_table_applies(lab, server):
    server.set_table("/etc/postfix/header_checks", "/^Subject:.*lottery/ REJECT no lotteries\n",
                     kind="regexp", params={"header_checks": "regexp:/etc/postfix/header_checks"})
    fate = lab.send("client", "jo@example.com", target="server", subject="you won the lottery")
    assert fate.status == "refused" and "no lotteries" in fate.reply.text


def test_postfix_broken_hand_edit_is_refused_and_kept(lab, server):
    lab.run("server", "echo 'smtpd_recipient_restrictions = reject_nonsense' "
                      ">> /etc/postfix/main.cf").check()
    result = server.apply_hand_edits(check=False)
    assert not result.ok
    assert "reject_nonsense" not in lab.read_file("server", "/etc/postfix/main.cf")
    assert "reject_nonsense" in lab.read_file("server", "/etc/postfix/main.cf.rejected")
    assert vrfy(lab, "client", "server").code == 252


def test_labkit_apply_refuses_a_feature_after_mailer_and_names_the_line(lab, relay):
    import subprocess
    import sys
    mc = lab.read_file("relay", "/etc/mail/sendmail.mc")
    lab.write_file("relay", "/etc/mail/sendmail.mc", mc + "FEATURE(`nouucp', `reject')dnl\n")
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "apply", "--lab", lab.name, "relay"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "FEATURE() should be before MAILER()" in res.stdout
    assert "(changed): FEATURE(`nouucp', `reject')dnl" in res.stdout
    assert "kept as /etc/mail/sendmail.mc.rejected" in res.stdout
    assert lab.read_file("relay", "/etc/mail/sendmail.mc") == mc


def test_snapshot_save_diff_and_restore(lab, server):
    from labkit import mta
    mta.snapshot_save(lab.engine, "server", "before")
    server.set(disable_vrfy_command="yes")
    assert "+disable_vrfy_command = yes" in mta.snapshot_diff(lab.engine, "server", "before")
    assert mta.snapshot_list(lab.engine, "server") == ["before"]
    result = mta.snapshot_restore(lab.engine, "server", "before")
    assert result.ok and "-disable_vrfy_command = yes" in result.changes
    assert server.get("disable_vrfy_command") == "no"
    with pytest.raises(Exception, match="no snapshot 'nope'"):
        mta.snapshot_restore(lab.engine, "server", "nope")


def test_narrowing_the_access_map_closes_the_open_relay(lab, relay):
    access = lab.read_file("relay", "/etc/mail/access")
    result = relay.set_map("access", access.replace("Connect:192.168\t\t\tRELAY",
                                                    "Connect:192.168.57\tRELAY"))
    assert result.ok and result.changes[0] == "/etc/mail/access replaced and rebuilt"
    assert not lab.relay_matrix("internet", "relay", wait=1).open_relay
    assert lab.send("client", "someone@example.net", target="relay").status == "at-sink"


def test_a_broken_map_line_is_refused_with_makemaps_line(lab, relay):
    access = lab.read_file("relay", "/etc/mail/access")
    with pytest.raises(ConfigRejected) as err:
        relay.set_map("access", access + "Connect:10.0.0.1\n")
    assert err.value.result.stage == "make"
    assert any("no RHS for LHS connect:10.0.0.1" in e for e in err.value.result.errors)
    assert lab.read_file("relay", "/etc/mail/access") == access


def test_aliases_sasl_users_and_smrsh_links(lab, relay):
    aliases = lab.read_file("relay", "/etc/aliases")
    relay.set_aliases(aliases + "webmaster: jo\n")
    assert "user jo" in lab.run("relay", ["sendmail", "-bv", "webmaster"]).stdout
    relay.sasl_user("jo", "n3w-pass")
    assert lab.auth("internet", "relay", password="n3w-pass").logins["PLAIN"].code == 235
    relay.smrsh_link("/usr/bin/true")
    assert lab.file_info("relay", "/etc/mail/smrsh/true").kind == "symlink"


def test_files_outside_the_mail_configuration_are_refused(relay):
    with pytest.raises(ConfigRejected, match="not part of Sendmail's configuration"):
        relay.set_file("/etc/passwd", "root::0:0::/root:/bin/sh\n")
