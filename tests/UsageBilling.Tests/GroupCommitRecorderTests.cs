using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using UsageBilling.Storage;

namespace UsageBilling.Tests;

public class GroupCommitRecorderTests
{
    private sealed class ScriptedStore : IUsageStore
    {
        public Func<IReadOnlyList<NewUsageEvent>, IReadOnlyList<StoredEventOutcome>> Insert { get; set; } = e => [.. e.Select(_ => StoredEventOutcome.Inserted)];

        public TaskCompletionSource Gate { get; } = new();

        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public List<int> Batches { get; } = [];

        public int DefaultConcurrentBatches => 1;

        public async Task<IReadOnlyList<StoredEventOutcome>> InsertEventsAsync(IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
        {
            Entered.TrySetResult();
            await Gate.Task;
            lock (Batches)
            {
                Batches.Add(events.Count);
            }

            return Insert(events);
        }

        public Task<BillingState?> GetBillingStateAsync(Guid userId, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<IReadOnlyList<MeterDayUsage>> GetUsageByDayAsync(Guid userId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken) => throw new NotSupportedException();
    }

    private static GroupCommitUsageRecorder Create(ScriptedStore store)
    {
        var options = new UsageBillingOptions();
        options.Meters["m"] = new MeterDefinition();
        var metrics = new UsageBillingMetrics(new TestMeterFactory());
        return new GroupCommitUsageRecorder(store, Options.Create(options), new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)), NullLogger<GroupCommitUsageRecorder>.Instance, metrics);
    }

    private sealed class TestMeterFactory : System.Diagnostics.Metrics.IMeterFactory
    {
        public System.Diagnostics.Metrics.Meter Create(System.Diagnostics.Metrics.MeterOptions options) => new(options);

        public void Dispose()
        {
        }
    }

    [Fact]
    public async Task RecordAsync_BatchFails_EveryCallerOfThatBatchGetsTheCause()
    {
        var store = new ScriptedStore();
        var boom = new InvalidOperationException("disk full");
        store.Insert = _ => throw boom;
        await using var recorder = Create(store);
        var calls = Enumerable.Range(0, 10).Select(i => recorder.RecordAsync(Guid.NewGuid(), "m", cancellationToken: TestContext.Current.CancellationToken)).ToList();
        store.Gate.SetResult();

        foreach (var call in calls)
        {
            Assert.Same(boom, await Assert.ThrowsAsync<InvalidOperationException>(() => call));
        }
    }

    [Fact]
    public async Task RecordAsync_CallersQueuedDuringCommit_ShareTheNextTransaction()
    {
        var store = new ScriptedStore();
        await using var recorder = Create(store);
        var first = recorder.RecordAsync(Guid.NewGuid(), "m", cancellationToken: TestContext.Current.CancellationToken);
        await store.Entered.Task;   // the writer took the first event and waits on the gate
        var rest = Enumerable.Range(0, 20).Select(_ => recorder.RecordAsync(Guid.NewGuid(), "m", cancellationToken: TestContext.Current.CancellationToken)).ToList();
        store.Gate.SetResult();
        await first;
        await Task.WhenAll(rest);

        Assert.Equal([1, 20], store.Batches);
    }

    [Fact]
    public async Task RecordAsync_SameKeyTwiceInOneBatch_StoresOnceAndBothGetOneId()
    {
        var store = new ScriptedStore();
        var user = Guid.NewGuid();
        await using var recorder = Create(store);

        // Hold the writer inside a first batch, so the three calls below are certain to share the next one.
        var first = recorder.RecordAsync(Guid.NewGuid(), "m", cancellationToken: TestContext.Current.CancellationToken);
        await store.Entered.Task;
        var a = recorder.RecordAsync(user, "m", 2, "k", cancellationToken: TestContext.Current.CancellationToken);
        var b = recorder.RecordAsync(user, "m", 2, "k", cancellationToken: TestContext.Current.CancellationToken);
        var c = recorder.RecordAsync(user, "m", 3, "k", cancellationToken: TestContext.Current.CancellationToken);
        store.Gate.SetResult();
        await first;

        Assert.Equal(await a, await b);
        await Assert.ThrowsAsync<IdempotencyConflictException>(() => c);
        Assert.Equal([1, 1], store.Batches);
    }

    [Fact]
    public async Task RecordAsync_RowFailsAlone_OnlyItsCallerFails()
    {
        var store = new ScriptedStore();
        var bad = Guid.NewGuid();
        store.Insert = events => [.. events.Select(e => e.UserId == bad ? StoredEventOutcome.UnknownUser : StoredEventOutcome.Inserted)];
        await using var recorder = Create(store);
        var good = recorder.RecordAsync(Guid.NewGuid(), "m", cancellationToken: TestContext.Current.CancellationToken);
        var failing = recorder.RecordAsync(bad, "m", cancellationToken: TestContext.Current.CancellationToken);
        store.Gate.SetResult();

        await good;
        await Assert.ThrowsAsync<UnknownUserException>(() => failing);
    }
}
