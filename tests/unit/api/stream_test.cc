// The change stream's wire format (api/stream.h).
#include "api/stream.h"

#include <catch2/catch.hpp>

using namespace berth;

TEST_CASE("stream: an event names the kinds that changed, in one order", "[api]") {
  CHECK(api::FormatChangeEvent(17, 3, api::kChangedTasks | api::kChangedNodes, 2) ==
        "id: 17-3\nevent: change\ndata: {\"seq\":3,\"changed\":[\"nodes\",\"tasks\"],\"tasks\":2}\n\n");
  CHECK(api::FormatChangeEvent(1, 0, api::kChangedEverything, 0) ==
        "id: 1-0\nevent: change\ndata: {\"seq\":0,\"changed\":[\"nodes\",\"tasks\",\"services\",\"taskdefinitions\","
        "\"repositories\",\"clusters\"],\"tasks\":0}\n\n");
}

TEST_CASE("stream: Last-Event-ID is <epoch>-<seq>, nothing else", "[api]") {
  uint64_t epoch = 0, seq = 0;
  REQUIRE(api::ParseEventId("1765000000000-42", &epoch, &seq));
  CHECK(epoch == 1765000000000u);
  CHECK(seq == 42);
  for (const char* bad : {"", "-", "1-", "-1", "1-x", "x-1", "1-2-3", "1 -2", "123456789012345678901-1"}) {
    CHECK_FALSE(api::ParseEventId(bad, &epoch, &seq));
  }
}
