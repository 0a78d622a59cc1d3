#include <gtest/gtest.h>

#include <numeric>

#include "tests/unit/virtio_mock_driver.h"
#include "vmm/virtio/queue.h"

namespace wisp {
namespace {

using testing::Buf;
using testing::MockQueue;
using testing::RawDesc;
using testing::readable;
using testing::writable;
using virtio::kDescFlagIndirect;
using virtio::kDescFlagNext;
using virtio::kDescFlagWrite;

constexpr uint64_t kMem = 1 << 20;  // 1 MiB of guest RAM

class QueueTest : public ::testing::Test {
 protected:
  GuestMemory mem = GuestMemory::create(kMem);
  MockQueue mq{mem, 0x1000, 16, 0x40000};

  DescriptorChain pop_one(Queue& q) {
    auto c = q.pop(mem);
    EXPECT_TRUE(c.has_value());
    return c ? std::move(*c) : DescriptorChain();
  }
  ChainError pop_error(Queue& q) { return pop_one(q).error(); }
};

// ---- validation ------------------------------------------------------------------------------

TEST_F(QueueTest, ValidateAcceptsAGoodQueueAndAnyUnreadyOne) {
  EXPECT_EQ(Queue::validate(mq.state(), 256, mem), "");
  QueueState junk;
  junk.size = 3;
  junk.desc_table = ~0ull;
  EXPECT_EQ(Queue::validate(junk, 256, mem), "");  // not ready: nothing is used
}

TEST_F(QueueTest, ValidateRejectsBadSizes) {
  QueueState s = mq.state();
  for (uint16_t bad : {0, 3, 12, 17}) {
    s.size = bad;
    EXPECT_NE(Queue::validate(s, 256, mem), "") << bad;
  }
  s.size = 512;
  EXPECT_NE(Queue::validate(s, 256, mem), "");  // above the device maximum
  s.size = 16;
  EXPECT_FALSE(Queue::restore(s, 8, mem).has_value());
}

TEST_F(QueueTest, ValidateRejectsMisalignedRings) {
  QueueState s = mq.state();
  s.desc_table += 8;
  EXPECT_NE(Queue::validate(s, 256, mem).find("16-byte"), std::string::npos);
  s = mq.state();
  s.avail_ring += 1;
  EXPECT_NE(Queue::validate(s, 256, mem).find("2-byte"), std::string::npos);
  s = mq.state();
  s.used_ring += 2;
  EXPECT_NE(Queue::validate(s, 256, mem).find("4-byte"), std::string::npos);
}

TEST_F(QueueTest, ValidateRejectsRingsOutsideRam) {
  QueueState s = mq.state();
  s.desc_table = kMem;  // just past the end
  EXPECT_NE(Queue::validate(s, 256, mem).find("descriptor table"), std::string::npos);
  s = mq.state();
  s.used_ring = kMem - 64;  // starts inside, runs off the end
  EXPECT_NE(Queue::validate(s, 256, mem).find("used ring"), std::string::npos);
  s = mq.state();
  s.avail_ring = ~0ull - 1;  // would wrap the address space
  EXPECT_NE(Queue::validate(s, 256, mem).find("available ring"), std::string::npos);
  std::string why;
  EXPECT_FALSE(Queue::restore(s, 256, mem, &why).has_value());
  EXPECT_FALSE(why.empty());
}

// The device writes the used ring: aliasing it with what the driver posts would let the
// device's own writes look like new requests (device_state_fuzz found such a hang).
TEST_F(QueueTest, ValidateRejectsAUsedRingAliasingTheDriversRings) {
  QueueState s = mq.state();
  s.used_ring = s.avail_ring & ~3ull;
  EXPECT_NE(Queue::validate(s, 256, mem).find("overlaps the available ring"), std::string::npos);
  s = mq.state();
  s.used_ring = s.desc_table + 16;
  EXPECT_NE(Queue::validate(s, 256, mem).find("overlaps the descriptor table"), std::string::npos);
}

TEST_F(QueueTest, SaveRestoreRoundTrip) {
  Queue q = mq.make_queue(true);
  mq.add_chain({readable(mq.alloc(8), 8)});
  auto c = pop_one(q);
  q.add_used(mem, c.head(), 0);
  QueueState s = q.save();
  EXPECT_EQ(s.next_avail, 1);
  EXPECT_EQ(s.next_used, 1);
  EXPECT_TRUE(s.event_idx);
  auto r = Queue::restore(s, 256, mem);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->next_avail(), 1);
  EXPECT_FALSE(r->pop(mem).has_value());
}

// ---- good chains ------------------------------------------------------------------------------

TEST_F(QueueTest, EmptyAndUnreadyQueuesPopNothing) {
  Queue q = mq.make_queue();
  EXPECT_FALSE(q.pop(mem).has_value());
  QueueState s = mq.state();
  s.ready = false;
  auto unready = Queue::restore(s, 256, mem);
  ASSERT_TRUE(unready.has_value());
  mq.add_chain({readable(mq.alloc(8), 8)});
  EXPECT_FALSE(unready->pop(mem).has_value());
  EXPECT_FALSE(unready->add_used(mem, 0, 0));
}

TEST_F(QueueTest, PopsAChainWithReadableThenWritableBuffers) {
  Queue q = mq.make_queue();
  uint64_t r1 = mq.alloc(10, 'a'), r2 = mq.alloc(6, 'b'), w1 = mq.alloc(4), w2 = mq.alloc(12);
  uint16_t head =
      mq.add_chain({readable(r1, 10), readable(r2, 6), writable(w1, 4), writable(w2, 12)});
  DescriptorChain c = pop_one(q);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.head(), head);
  ASSERT_EQ(c.readable().size(), 2u);
  ASSERT_EQ(c.writable().size(), 2u);
  EXPECT_EQ(c.readable_bytes(), 16u);
  EXPECT_EQ(c.writable_bytes(), 16u);
  EXPECT_EQ(c.readable()[1].addr.value(), r2);

  // The readable part reads as one stream across buffer boundaries.
  uint8_t buf[16];
  EXPECT_EQ(c.read(mem, 8, {buf, 16}), 8u);  // only 8 bytes left from offset 8
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), 8), "aabbbbbb");

  std::vector<uint8_t> out(16);
  std::iota(out.begin(), out.end(), 1);
  EXPECT_EQ(c.write(mem, 0, out), 16u);
  EXPECT_EQ(mq.bytes(w1, 4), std::vector<uint8_t>({1, 2, 3, 4}));
  EXPECT_EQ(mq.bytes(w2, 1)[0], 5);

  EXPECT_TRUE(q.add_used(mem, c.head(), 16));
  EXPECT_EQ(mq.used_idx(), 1);
  EXPECT_EQ(mq.used_elem(0), std::make_pair(uint32_t{head}, 16u));
  EXPECT_FALSE(q.pop(mem).has_value());
}

TEST_F(QueueTest, ViewsCoverExactlyTheRequestedRange) {
  Queue q = mq.make_queue();
  uint64_t a = mq.alloc(8), b = mq.alloc(8);
  mq.add_chain({writable(a, 8), writable(b, 8)});
  DescriptorChain c = pop_one(q);
  auto v = c.writable_views(mem, 6, 4);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].size(), 2u);
  EXPECT_EQ(v[1].size(), 2u);
  EXPECT_EQ(v[1].data(), mem.slice(GuestAddress(b), 1).data());
  EXPECT_TRUE(c.writable_views(mem, 10, 7).empty());  // runs past the stream
  EXPECT_TRUE(c.readable_views(mem, 0, 1).empty());
  EXPECT_TRUE(c.writable_views(mem, 16, 0).empty());
}

TEST_F(QueueTest, ZeroLengthBuffersAreDropped) {
  Queue q = mq.make_queue();
  mq.add_chain({readable(mq.alloc(4), 4), readable(kMem * 4, 0), writable(mq.alloc(4), 4)});
  DescriptorChain c = pop_one(q);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.readable().size(), 1u);
  EXPECT_EQ(c.writable().size(), 1u);
}

TEST_F(QueueTest, AChainAsLongAsTheQueueIsAccepted) {
  Queue q = mq.make_queue();
  std::vector<Buf> bufs;
  for (int i = 0; i < 16; ++i) bufs.push_back(writable(mq.alloc(1), 1));
  mq.add_chain(bufs);
  DescriptorChain c = pop_one(q);
  EXPECT_TRUE(c.ok());
  EXPECT_EQ(c.writable().size(), 16u);
}

// ---- malformed chains: counted, reported, queue keeps going ---------------------------------

TEST_F(QueueTest, BufferOutsideRamIsRefusedAndTheNextChainStillWorks) {
  Queue q = mq.make_queue();
  mq.add_chain({readable(kMem - 4, 8)});      // straddles the end of RAM
  mq.add_chain({writable(0xd000'0000, 16)});  // in the MMIO hole
  mq.add_chain({readable(~0ull - 3, 8)});     // wraps the address space
  mq.add_chain({readable(mq.alloc(8), 8)});
  EXPECT_EQ(pop_error(q), ChainError::kBufferOutOfRange);
  EXPECT_EQ(pop_error(q), ChainError::kBufferOutOfRange);
  EXPECT_EQ(pop_error(q), ChainError::kBufferOutOfRange);
  EXPECT_TRUE(pop_one(q).ok());
  EXPECT_EQ(q.malformed_chains(), 3u);
  EXPECT_FALSE(q.broken());
}

TEST_F(QueueTest, RefusedChainsCarryNoBuffers) {
  Queue q = mq.make_queue();
  mq.add_chain({readable(mq.alloc(8), 8), writable(kMem, 8)});
  DescriptorChain c = pop_one(q);
  EXPECT_FALSE(c.ok());
  EXPECT_TRUE(c.readable().empty());
  EXPECT_EQ(c.readable_bytes(), 0u);
  uint8_t b[4];
  EXPECT_EQ(c.read(mem, 0, b), 0u);
}

TEST_F(QueueTest, HeadOutOfRangeIsRefusedAndCannotBeReturned) {
  Queue q = mq.make_queue();
  mq.publish(16);
  DescriptorChain c = pop_one(q);
  EXPECT_EQ(c.error(), ChainError::kHeadOutOfRange);
  EXPECT_FALSE(q.add_used(mem, c.head(), 0));
  EXPECT_EQ(q.bad_used_heads(), 1u);
  EXPECT_EQ(mq.used_idx(), 0);
}

TEST_F(QueueTest, NextOutOfRangeIsRefused) {
  Queue q = mq.make_queue();
  mq.set_desc(0, {mq.alloc(4), 4, kDescFlagNext, 16});
  mq.publish(0);
  EXPECT_EQ(pop_error(q), ChainError::kNextOutOfRange);
}

TEST_F(QueueTest, LoopsAreDetected) {
  Queue q = mq.make_queue();
  uint64_t a = mq.alloc(4);
  mq.set_desc(0, {a, 4, kDescFlagNext, 1});
  mq.set_desc(1, {a, 4, kDescFlagNext, 0});
  mq.publish(0);
  mq.set_desc(5, {a, 4, kDescFlagNext, 5});  // a self-loop
  mq.publish(5);
  EXPECT_EQ(pop_error(q), ChainError::kLoop);
  EXPECT_EQ(pop_error(q), ChainError::kLoop);
}

TEST_F(QueueTest, WrongDirectionIsRefused) {
  Queue q = mq.make_queue();
  mq.add_chain({writable(mq.alloc(4), 4), readable(mq.alloc(4), 4)});
  EXPECT_EQ(pop_error(q), ChainError::kWrongDirection);
}

// ---- indirect tables ---------------------------------------------------------------------------

TEST_F(QueueTest, IndirectTableIsWalked) {
  Queue q = mq.make_queue();
  uint64_t hdr = mq.alloc(16, 'h'), data = mq.alloc(512), st = mq.alloc(1);
  uint64_t table = mq.write_table({{hdr, 16, kDescFlagNext, 1},
                                   {data, 512, kDescFlagNext | kDescFlagWrite, 2},
                                   {st, 1, kDescFlagWrite, 0}});
  mq.set_desc(3, {table, 48, kDescFlagIndirect, 0});
  mq.publish(3);
  DescriptorChain c = pop_one(q);
  ASSERT_TRUE(c.ok()) << chain_error_name(c.error());
  EXPECT_EQ(c.head(), 3);
  EXPECT_EQ(c.readable_bytes(), 16u);
  EXPECT_EQ(c.writable_bytes(), 513u);
}

TEST_F(QueueTest, DirectBuffersThenIndirectTable) {
  Queue q = mq.make_queue();
  uint64_t table = mq.write_table({{mq.alloc(8), 8, kDescFlagWrite, 0}});
  mq.set_desc(0, {mq.alloc(4), 4, kDescFlagNext, 1});
  // The WRITE flag on the pointing descriptor means nothing and is ignored.
  mq.set_desc(1, {table, 16, kDescFlagIndirect | kDescFlagWrite, 0});
  mq.publish(0);
  DescriptorChain c = pop_one(q);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.readable_bytes(), 4u);
  EXPECT_EQ(c.writable_bytes(), 8u);
}

TEST_F(QueueTest, NestedIndirectIsRefused) {
  Queue q = mq.make_queue();
  uint64_t inner = mq.write_table({{mq.alloc(8), 8, 0, 0}});
  uint64_t outer = mq.write_table({{inner, 16, kDescFlagIndirect, 0}});
  mq.set_desc(0, {outer, 16, kDescFlagIndirect, 0});
  mq.publish(0);
  EXPECT_EQ(pop_error(q), ChainError::kIndirectNested);
}

TEST_F(QueueTest, IndirectTableOutsideRamIsRefused) {
  Queue q = mq.make_queue();
  mq.set_desc(0, {kMem - 16, 32, kDescFlagIndirect, 0});
  mq.publish(0);
  mq.set_desc(1, {~0ull - 15, 32, kDescFlagIndirect, 0});
  mq.publish(1);
  EXPECT_EQ(pop_error(q), ChainError::kIndirectOutOfRange);
  EXPECT_EQ(pop_error(q), ChainError::kIndirectOutOfRange);
}

TEST_F(QueueTest, IndirectTableWithBadLengthIsRefused) {
  Queue q = mq.make_queue();
  uint64_t table = mq.write_table({{mq.alloc(8), 8, 0, 0}, {mq.alloc(8), 8, 0, 0}});
  mq.set_desc(0, {table, 0, kDescFlagIndirect, 0});
  mq.set_desc(1, {table, 17, kDescFlagIndirect, 0});
  mq.set_desc(2, {table, 16 * (Queue::kMaxIndirectEntries + 1), kDescFlagIndirect, 0});
  mq.set_desc(3, {table, 16, kDescFlagIndirect | kDescFlagNext, 4});
  for (uint16_t h : {0, 1, 2, 3}) mq.publish(h);
  EXPECT_EQ(pop_error(q), ChainError::kIndirectBadLength);
  EXPECT_EQ(pop_error(q), ChainError::kIndirectBadLength);
  EXPECT_EQ(pop_error(q), ChainError::kIndirectTooLong);
  EXPECT_EQ(pop_error(q), ChainError::kIndirectWithNext);
}

TEST_F(QueueTest, IndirectTableLoopsAndBadNextAreRefused) {
  Queue q = mq.make_queue();
  uint64_t a = mq.alloc(8);
  uint64_t looped = mq.write_table({{a, 8, kDescFlagNext, 1}, {a, 8, kDescFlagNext, 0}});
  uint64_t past = mq.write_table({{a, 8, kDescFlagNext, 2}, {a, 8, 0, 0}});
  uint64_t wrongdir = mq.write_table({{a, 8, kDescFlagWrite | kDescFlagNext, 1}, {a, 8, 0, 0}});
  mq.set_desc(0, {looped, 32, kDescFlagIndirect, 0});
  mq.set_desc(1, {past, 32, kDescFlagIndirect, 0});
  mq.set_desc(2, {wrongdir, 32, kDescFlagIndirect, 0});
  for (uint16_t h : {0, 1, 2}) mq.publish(h);
  EXPECT_EQ(pop_error(q), ChainError::kLoop);
  EXPECT_EQ(pop_error(q), ChainError::kNextOutOfRange);
  EXPECT_EQ(pop_error(q), ChainError::kWrongDirection);
}

TEST_F(QueueTest, LongestIndirectTableIsAccepted) {
  Queue q = mq.make_queue();
  uint64_t a = mq.alloc(1);
  std::vector<RawDesc> descs;
  for (uint32_t i = 0; i < Queue::kMaxIndirectEntries; ++i)
    descs.push_back({a, 1,
                     static_cast<uint16_t>(i + 1 < Queue::kMaxIndirectEntries ? kDescFlagNext : 0),
                     static_cast<uint16_t>(i + 1)});
  uint64_t table = mq.write_table(descs);
  mq.set_desc(0, {table, 16 * Queue::kMaxIndirectEntries, kDescFlagIndirect, 0});
  mq.publish(0);
  DescriptorChain c = pop_one(q);
  EXPECT_TRUE(c.ok());
  EXPECT_EQ(c.readable_bytes(), Queue::kMaxIndirectEntries);
}

TEST_F(QueueTest, UndoPopReturnsTheSameChainAgain) {
  Queue q = mq.make_queue();
  uint16_t head = mq.add_chain({writable(mq.alloc(4), 4)});
  EXPECT_EQ(pop_one(q).head(), head);
  q.undo_pop();
  EXPECT_EQ(pop_one(q).head(), head);
  EXPECT_FALSE(q.pop(mem).has_value());
}

// ---- indexes ----------------------------------------------------------------------------------

TEST_F(QueueTest, IndexesWrapAround16Bits) {
  mq.start_at(65534);
  Queue q = mq.make_queue();
  std::vector<uint16_t> heads;
  for (int i = 0; i < 4; ++i) heads.push_back(mq.add_chain({writable(mq.alloc(4), 4)}));
  for (int i = 0; i < 4; ++i) {
    DescriptorChain c = pop_one(q);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c.head(), heads[i]);
    EXPECT_TRUE(q.add_used(mem, c.head(), static_cast<uint32_t>(i)));
  }
  EXPECT_FALSE(q.pop(mem).has_value());
  EXPECT_EQ(q.next_avail(), 2);
  EXPECT_EQ(mq.used_idx(), 2);
  for (uint16_t i = 0; i < 4; ++i)
    EXPECT_EQ(mq.used_elem(static_cast<uint16_t>(65534 + i)),
              std::make_pair(uint32_t{heads[i]}, uint32_t{i}));
}

TEST_F(QueueTest, ImpossibleAvailIndexBreaksTheQueue) {
  Queue q = mq.make_queue();
  mq.set_avail_idx(17);  // 17 pending on a 16-entry ring
  EXPECT_FALSE(q.pop(mem).has_value());
  EXPECT_TRUE(q.broken());
  mq.set_avail_idx(1);
  EXPECT_FALSE(q.pop(mem).has_value());  // stays broken until rebuilt
  EXPECT_FALSE(q.enable_notification(mem));
}

// ---- notification suppression -----------------------------------------------------------------

TEST_F(QueueTest, WithoutEventIdxTheNoInterruptFlagIsHonoured) {
  Queue q = mq.make_queue(false);
  EXPECT_FALSE(q.needs_notification(mem));  // nothing returned yet
  mq.add_chain({writable(mq.alloc(4), 4)});
  q.add_used(mem, pop_one(q).head(), 4);
  EXPECT_TRUE(q.needs_notification(mem));
  EXPECT_FALSE(q.needs_notification(mem));  // nothing new since
  mq.set_avail_flags(virtio::kAvailFlagNoInterrupt);
  mq.add_chain({writable(mq.alloc(4), 4)});
  q.add_used(mem, pop_one(q).head(), 4);
  EXPECT_FALSE(q.needs_notification(mem));
}

TEST_F(QueueTest, WithoutEventIdxTheUsedFlagSuppressesKicks) {
  Queue q = mq.make_queue(false);
  q.disable_notification(mem);
  EXPECT_EQ(mq.used_flags(), virtio::kUsedFlagNoNotify);
  EXPECT_FALSE(q.enable_notification(mem));
  EXPECT_EQ(mq.used_flags(), 0);
  mq.add_chain({writable(mq.alloc(4), 4)});
  EXPECT_TRUE(q.enable_notification(mem));  // a chain is waiting: keep draining
}

TEST_F(QueueTest, EventIdxUsedEventDecidesInterrupts) {
  Queue q = mq.make_queue(true);
  auto complete = [&] {
    mq.add_chain({writable(mq.alloc(4), 4)});
    q.add_used(mem, pop_one(q).head(), 4);
  };
  mq.set_used_event(0);  // the driver wants to hear about used entry 0
  complete();            // used idx 0 -> 1
  EXPECT_TRUE(q.needs_notification(mem));
  complete();  // 1 -> 2: used_event (0) already passed
  EXPECT_FALSE(q.needs_notification(mem));
  mq.set_used_event(3);  // wake me when entry 3 is used, i.e. idx goes past 3
  complete();            // 2 -> 3
  EXPECT_FALSE(q.needs_notification(mem));
  complete();  // 3 -> 4
  EXPECT_TRUE(q.needs_notification(mem));
  // A batch that jumps over used_event still notifies once.
  mq.set_used_event(5);
  complete();
  complete();
  complete();  // 4 -> 7
  EXPECT_TRUE(q.needs_notification(mem));
}

TEST_F(QueueTest, EventIdxAcrossWrapAround) {
  mq.start_at(65535);
  Queue q = mq.make_queue(true);
  mq.set_used_event(65535);
  mq.add_chain({writable(mq.alloc(4), 4)});
  q.add_used(mem, pop_one(q).head(), 4);  // used idx 65535 -> 0
  EXPECT_TRUE(q.needs_notification(mem));
}

TEST_F(QueueTest, EventIdxAvailEventTracksWhatTheDeviceConsumed) {
  Queue q = mq.make_queue(true);
  mq.add_chain({writable(mq.alloc(4), 4)});
  mq.add_chain({writable(mq.alloc(4), 4)});
  q.disable_notification(mem);
  EXPECT_EQ(mq.used_flags(), 0);  // EVENT_IDX does not use the flag
  pop_one(q);
  EXPECT_TRUE(q.enable_notification(mem));  // one more is waiting
  EXPECT_EQ(mq.avail_event(), 1);
  pop_one(q);
  EXPECT_FALSE(q.enable_notification(mem));
  EXPECT_EQ(mq.avail_event(), 2);  // the driver kicks when it publishes entry 2
}

}  // namespace
}  // namespace wisp
