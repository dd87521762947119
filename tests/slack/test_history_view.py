from datetime import UTC, datetime, timedelta

from bot.domain.request import RequestState
from bot.slack.history_view import SHOWN, history_answer, thread_link
from tests.support.requests import change_request

AT = datetime(2025, 6, 1, tzinfo=UTC)


def test_each_change_says_state_people_when_images_and_links_its_thread() -> None:
    req = change_request(
        at=AT,
        state=RequestState.SUCCEEDED,
        finished_at=AT + timedelta(minutes=4),
        current_image_name="centos-7",
        approvals=["U0APPROVE1"],
        approval_ts="1748736000.123456",
        server_name="web-<01>",
    )
    answer = history_answer([req], scope="of web-01")
    text = answer["blocks"][1]["text"]["text"]
    assert "https://slack.com/archives/C01APPROVE1/p1748736000123456" in text
    assert "Succeeded" in text and "`centos-7` → `ubuntu-22.04`" in text
    assert "<@U01REQ0001>" in text and "approved by <@U0APPROVE1>" in text and "<!date^" in text
    assert "web-&lt;01&gt;" in text  # escaped: a name cannot fake a link
    assert thread_link(change_request()) is None


def test_a_long_history_stays_within_block_kit_limits() -> None:
    reqs = [change_request(at=AT + timedelta(hours=n), reason="r" * 500) for n in range(60)]
    answer = history_answer(reqs, scope="of every server")
    assert len(answer["blocks"]) == SHOWN + 2 <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in answer["blocks"] if b["type"] == "section")
    assert len(answer["text"]) < 3000


def test_nothing_found_says_how_to_widen_the_search() -> None:
    assert "without filters" in history_answer([], scope="of web-09")["text"]
