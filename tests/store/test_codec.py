"""Rows into requests: what a column added after its rows were written reads as."""

from bot.domain.request import ChangeRequest, RequestState
from bot.store.codec import encode_text, request_from_row


def test_a_null_in_a_column_added_later_reads_as_the_fields_default(new_request):
    request: ChangeRequest = new_request(state=RequestState.APPROVED, overdue=True)
    row = {name: encode_text(name, getattr(request, name)) for name in type(request).model_fields}
    assert request_from_row(row) == request
    row.update(overdue=None, poll_failures=None, stop_type=None, server_name=None)  # columns of a later version
    old = request_from_row(row)
    assert (old.overdue, old.poll_failures, old.stop_type.value, old.server_name) == (False, 0, "SOFT", "")
    assert old.keyname == request.keyname and old.job_id is None  # nullable fields stay as they are
