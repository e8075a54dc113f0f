// Glob matching with `*` only (any run of characters, none included), as the
// ECS cluster query language's =~ and ECR lifecycle tag patterns use it.
#pragma once

#include <string_view>

namespace berth {

// True if `text` matches `pattern`. Linear in practice: greedy, backtracking only
// to the last star; O(|pattern| * |text|) at worst.
bool WildcardMatch(std::string_view pattern, std::string_view text);

}  // namespace berth
