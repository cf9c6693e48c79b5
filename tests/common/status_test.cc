// Tests of netsem::Status and netsem::Result<T>.
#include "netsem/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

namespace netsem {
namespace {

TEST(Status, DefaultIsOkWithNoMessage) {
  const Status status;
  EXPECT_TRUE(status.is_ok());
  EXPECT_TRUE(static_cast<bool>(status));
  EXPECT_EQ(status.code(), StatusCode::kOk);
  EXPECT_EQ(status.to_string(), "OK");
}

TEST(Status, ErrorCarriesCodeAndMessage) {
  const Status status(StatusCode::kNotHeld, "no permits of db");
  EXPECT_FALSE(status.is_ok());
  EXPECT_EQ(status.code(), StatusCode::kNotHeld);
  EXPECT_EQ(status.message(), "no permits of db");
  EXPECT_EQ(status.to_string(), "NOT_HELD: no permits of db");
}

TEST(Status, EveryCodeHasADistinctName) {
  std::set<std::string_view> names;
  for (int code = 0; code <= static_cast<int>(StatusCode::kInternal); ++code) {
    const auto name = status_code_name(static_cast<StatusCode>(code));
    EXPECT_NE(name, "UNKNOWN");
    EXPECT_TRUE(names.insert(name).second) << name;
  }
}

TEST(Result, HoldsAValueOrAnError) {
  Result<int> value(42);
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(*value, 42);
  EXPECT_TRUE(value.status().is_ok());

  Result<int> error(Status(StatusCode::kTimeout, "too slow"));
  EXPECT_FALSE(error.has_value());
  EXPECT_EQ(error.status().code(), StatusCode::kTimeout);
}

TEST(Result, MovesOutMoveOnlyValues) {
  Result<std::unique_ptr<int>> result(std::make_unique<int>(7));
  std::unique_ptr<int> owned = std::move(result).value();
  ASSERT_TRUE(owned);
  EXPECT_EQ(*owned, 7);
}

}  // namespace
}  // namespace netsem
