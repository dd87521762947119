"""The page's mrkdwn and Block Kit renderer, run in the browser on the modules the page loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import CHROMIUM, Slack

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
    pytest.mark.asyncio(loop_scope="module"),
]

MRKDWN = """async (cases) => {
  const { mrkdwn } = await import("/static/mrkdwn.js");
  const ctx = { names: { U01REQ0001: "alice" }, channels: { C01APPROVE1: "ecs-approvals" } };
  return cases.map((text) => mrkdwn(text, ctx));
}"""

CASES = {
    "*Server*\nweb-01": "<strong>Server</strong><br>web-01",
    "a *b* snake_case_x _it_ ~gone~": "a <strong>b</strong> snake_case_x <em>it</em> <del>gone</del>",
    "`CR-1` and ```/changeos &lt;x&gt;```": '<code>CR-1</code> and <pre class="code-block">/changeos &lt;x&gt;</pre>',
    "by <@U01REQ0001> in <#C01APPROVE1> and <#C9|x-y>": (
        'by <span class="mention" data-user="U01REQ0001">@alice</span> in '
        '<span class="channel-link" data-channel="C01APPROVE1">#ecs-approvals</span> and '
        '<span class="channel-link" data-channel="C9">#x-y</span>'
    ),
    "<https://e.x/a?b=1&amp;c=2|Follow the thread>": (
        '<a href="https://e.x/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">Follow the thread</a>'
    ),
    "&lt;b&gt;bold?&lt;/b&gt; &amp; <javascript:alert(1)|click>": "&lt;b&gt;bold?&lt;/b&gt; &amp; click",
    "<!here> :white_check_mark: *done*": '<span class="mention">@here</span> ✅ <strong>done</strong>',
    "<!date^1718000000^{date_num}|2024-06-10 06:13 UTC>": "2024-06-10",
    "<!date^1718000000^{nonsense}|the fallback>": "the fallback",
}


async def test_mrkdwn_is_drawn_as_slack_draws_it(slack: Slack) -> None:
    shown = await slack.page.evaluate(MRKDWN, list(CASES))
    for (text, expected), got in zip(CASES.items(), shown, strict=True):
        if "<time" in got:
            got = got[got.index(">") + 1 : got.rindex("<")]
        assert got == expected, text


async def test_unknown_blocks_and_elements_are_visible_boxes(slack: Slack) -> None:
    shown = await slack.page.evaluate(
        """async () => {
          const { renderBlocks } = await import("/static/blockkit.js");
          const node = renderBlocks([
            { type: "rich_text", elements: [] },
            { type: "actions", elements: [{ type: "datepicker", action_id: "d" }, { type: "button", action_id: "b",
              text: { type: "plain_text", text: "Go" } }] },
            { type: "section", text: { type: "mrkdwn", text: "*x*" }, accessory: { type: "image" } },
          ], { names: {}, channels: {}, act: () => {}, confirm: () => true });
          return [...node.querySelectorAll(".unsupported")].map((n) => n.textContent)
            .concat([node.querySelector("button").textContent]);
        }"""
    )
    assert shown == [
        "Unsupported block: rich_text (the playground does not draw it)",
        "Unsupported element: datepicker (the playground does not draw it)",
        "Unsupported element: image (the playground does not draw it)",
        "Go",
    ]


async def test_typed_values_survive_an_update_with_the_same_ids(slack: Slack) -> None:
    values = await slack.page.evaluate(
        """async () => {
          const { stateFor } = await import("/static/blockkit.js");
          const input = (block, action, extra = {}) => ({ type: "input", block_id: block, label: { type: "plain_text",
            text: block }, element: { type: "plain_text_input", action_id: action, ...extra } });
          const view = { blocks: [input("reason_b", "reason", { initial_value: "from the command" }),
                                  input("password_b:1", "password"),
                                  { type: "input", block_id: "pick_b", label: { type: "plain_text", text: "p" },
                                    element: { type: "checkboxes", action_id: "pick", options: [] } }] };
          const kept = { reason_b: { reason: { type: "plain_text_input", value: "typed" } },
                         "password_b:0": { password: { type: "plain_text_input", value: "secret" } } };
          return stateFor(view, kept);
        }"""
    )
    assert values == {
        "reason_b": {"reason": {"type": "plain_text_input", "value": "typed"}},
        "password_b:1": {"password": {"type": "plain_text_input", "value": None}},  # a new block_id clears it
        "pick_b": {"pick": {"type": "checkboxes", "selected_options": []}},
    }
