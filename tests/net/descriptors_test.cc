// Tests of the descriptor budget's split (plan_descriptors).
#include "net/descriptors.h"

#include <gtest/gtest.h>

namespace netsem::server {
namespace {

TEST(PlanDescriptors, MaxConnectionsBindsWhenDescriptorsAreAmple) {
  const auto plan = plan_descriptors(1048576, 12, 10000);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->sessions, 10000u);
  EXPECT_EQ(plan->rejecting, kMaxRejecting);
  EXPECT_FALSE(plan->limited);
}

TEST(PlanDescriptors, DescriptorsBindAtTheDefaultSoftLimit) {
  // 1024 descriptors, 12 open: 996 free, 124 for refusals, 872 sessions.
  const auto plan = plan_descriptors(1024, 12, 10000);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->rejecting, 124u);
  EXPECT_EQ(plan->sessions, 872u);
  EXPECT_TRUE(plan->limited);
  EXPECT_EQ(12 + kOwnFilesReserve + plan->rejecting + plan->sessions, 1024u) << "every descriptor accounted for";
}

TEST(PlanDescriptors, TinyLimitKeepsOneRefusal) {
  const auto plan = plan_descriptors(12 + kOwnFilesReserve + 2, 12, 10000);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->rejecting, 1u);
  EXPECT_EQ(plan->sessions, 1u);
}

TEST(PlanDescriptors, TooLowIsAnErrorNamingWhatIsNeeded) {
  const auto plan = plan_descriptors(12 + kOwnFilesReserve + 1, 12, 10000);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("needs at least 30"), std::string::npos) << plan.status().message();
}

TEST(PlanDescriptors, UnlimitedIsNotAnOverflow) {
  const auto plan = plan_descriptors(UINT64_MAX, 12, 1000000);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->sessions, 1000000u);
  EXPECT_FALSE(plan->limited);
}

}  // namespace
}  // namespace netsem::server
