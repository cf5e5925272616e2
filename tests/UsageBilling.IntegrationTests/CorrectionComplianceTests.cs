using Microsoft.EntityFrameworkCore;
using UsageBilling.IntegrationTests.Infrastructure;
using UsageBilling.Storage;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// Voids and their Stripe side (cancel and resend within 24 h, a negative event after it), through the real
/// Stripe.net client against the emulator, on both databases.
/// </summary>
public abstract class CorrectionComplianceTests(Provider provider) : FlushComplianceTestsBase(provider)
{
    private IUsageCorrections Corrections => Host.Get<IUsageCorrections>();

    private async Task<(Guid User, string Customer, Guid[] Events)> RecordAsync(string meter, params long[] quantities)
    {
        var (user, customer) = await NewCustomerAsync();
        var ids = new List<Guid>();
        for (var i = 0; i < quantities.Length; i++)
        {
            ids.Add(await Recorder.RecordAsync(user, meter, quantities[i], $"k{i}", Now.AddMinutes(-10 + i), Ct));
        }

        return (user, customer, [.. ids]);
    }

    private Task<decimal> StripeTotalAsync(string customer, string meter) =>
        Emulator.Admin.GetMeterTotalAsync(customer, meter, new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero), new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero), Ct);

    private async Task<long> PeriodTotalAsync(Guid user, string meter)
    {
        await using var db = Host.CreateContext();
        return await db.UsagePeriodTotals.Where(t => t.UserId == user && t.Meter == meter).SumAsync(t => t.Quantity, Ct);
    }

    [Fact]
    public async Task Void_UnreportedEvent_LeavesTotalsRollupsAndStripe()
    {
        var (user, customer, events) = await RecordAsync("ai_messages", 10, 20, 30);
        Assert.Equal(60, await PeriodTotalAsync(user, "ai_messages"));

        var correction = await Corrections.VoidAsync(events[1], "ops@example.com", "double-counted by a retry bug", Ct);
        await FlushUntilDoneAsync();

        Assert.Equal((UsageCorrectionKind.Removed, UsageCorrectionStatus.Done, 20L), (correction.Kind, correction.Status, correction.Quantity));
        Assert.Equal(40m, await StripeTotalAsync(customer, "ai_messages"));
        Assert.Equal(40, await PeriodTotalAsync(user, "ai_messages"));
        var summary = await Host.Get<IUsageSummaryService>().GetCurrentPeriodAsync(user, Ct);
        Assert.Equal(40, summary.Meters.Single(m => m.Meter == "ai_messages").Used);
        var audit = Assert.Single(await Corrections.ListAsync(user, cancellationToken: Ct));
        Assert.Equal(("ops@example.com", "double-counted by a retry bug", events[1]), (audit.Actor, audit.Reason, audit.EventId));
        await AssertTotalsMatchAsync();

        var again = await Assert.ThrowsAsync<UsageCorrectionRefusedException>(() => Corrections.VoidAsync(events[1], "ops", "again", Ct));
        Assert.Equal(UsageCorrectionRefusal.EventNotFound, again.Refusal);
    }

    [Fact]
    public async Task Void_ReportedWithin24Hours_CancelsReportAndResendsTheRest()
    {
        var (user, customer, events) = await RecordAsync("ai_messages", 10, 20, 30);
        await FlushUntilDoneAsync();
        Assert.Equal(60m, await StripeTotalAsync(customer, "ai_messages"));
        await using var before = Host.CreateContext();
        var original = await before.UsageEvents.Where(e => e.Id == events[0]).Select(e => e.ReportId!.Value).SingleAsync(Ct);
        Time.Advance(TimeSpan.FromHours(20));

        var correction = await Corrections.VoidAsync(events[1], "ops", "customer complaint #12", Ct);
        Assert.Equal((UsageCorrectionKind.CancelAndResend, UsageCorrectionStatus.Pending, original), (correction.Kind, correction.Status, correction.ReportId));
        Assert.Equal(60m, await StripeTotalAsync(customer, "ai_messages"));
        await FlushUntilDoneAsync();

        Assert.Equal(40m, await StripeTotalAsync(customer, "ai_messages"));
        var accepted = await Emulator.Admin.GetMeterEventsAsync(customer, cancellationToken: Ct);
        Assert.True(accepted.Single(a => a.Identifier == original.ToString()).Canceled);
        var done = Assert.Single(await Corrections.ListAsync(user, cancellationToken: Ct));
        Assert.Equal(UsageCorrectionStatus.Done, done.Status);
        var resend = accepted.Single(a => a.Identifier == done.CorrectionReportId.ToString());
        Assert.Equal((40L, false), (resend.Value, resend.Canceled));
        await using var db = Host.CreateContext();
        Assert.Equal(UsageReportStatus.Canceled, (await db.UsageReports.SingleAsync(r => r.Id == original, Ct)).Status);
        Assert.Equal(40, await PeriodTotalAsync(user, "ai_messages"));
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task FlushCustomer_SendsThatCustomersOwedCancelAndResend_NotOthers()
    {
        var (alice, aliceCus, aliceEvents) = await RecordAsync("ai_messages", 10, 20);
        var (_, bobCus, bobEvents) = await RecordAsync("ai_messages", 5, 6);
        await FlushUntilDoneAsync();
        await Corrections.VoidAsync(aliceEvents[0], "ops", "a", Ct);
        await Corrections.VoidAsync(bobEvents[0], "ops", "b", Ct);

        await Flusher.FlushCustomerAsync(alice, Ct);

        Assert.Equal(20m, await StripeTotalAsync(aliceCus, "ai_messages"));
        Assert.Equal(11m, await StripeTotalAsync(bobCus, "ai_messages"));
        await FlushUntilDoneAsync();
        Assert.Equal(6m, await StripeTotalAsync(bobCus, "ai_messages"));
    }

    [Fact]
    public async Task Cancel_AppliedByStripeButAnswerLost_RetriedOnceMoreAndResentExactlyOnce()
    {
        var (user, customer, events) = await RecordAsync("ai_messages", 10, 20, 30);
        await FlushUntilDoneAsync();
        await Corrections.VoidAsync(events[2], "ops", "wrong job", Ct);

        // Stripe applies the cancel but the answer never arrives, then two 500s: as if the flusher crashed after the call.
        const string path = "/v1/billing/meter_event_adjustments";
        await Emulator.Admin.InjectFaultAsync(new StripeEmulator.Admin.FaultSpec(path, StripeEmulator.Admin.FaultKind.DropAfterProcessing), Ct);
        await Emulator.Admin.InjectFaultAsync(new StripeEmulator.Admin.FaultSpec(path, StripeEmulator.Admin.FaultKind.ServerError, Count: 2), Ct);
        UsageCorrectionInfo correction;
        var rounds = 0;
        do
        {
            await FlushUntilDoneAsync();
            Time.Advance(TimeSpan.FromMinutes(11));
            correction = Assert.Single(await Corrections.ListAsync(user, cancellationToken: Ct));
        }
        while (correction.Status == UsageCorrectionStatus.Pending && ++rounds < 20);
        await FlushUntilDoneAsync();

        Assert.Equal(UsageCorrectionStatus.Done, correction.Status);
        Assert.Equal(30m, await StripeTotalAsync(customer, "ai_messages"));
        var live = (await Emulator.Admin.GetMeterEventsAsync(customer, cancellationToken: Ct)).Where(a => !a.Canceled).ToList();
        Assert.Equal(30L, Assert.Single(live).Value);
        Assert.Equal(correction.CorrectionReportId.ToString(), live[0].Identifier);
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Void_TwoEventsOfOneReportBeforeTheFlush_OneResendStripeTotalExact()
    {
        var (user, customer, events) = await RecordAsync("ai_messages", 10, 20, 30, 40);
        await FlushUntilDoneAsync();
        Time.Advance(TimeSpan.FromHours(1));

        await Corrections.VoidAsync(events[1], "ops", "a", Ct);
        await Corrections.VoidAsync(events[3], "ops", "b", Ct);
        await FlushUntilDoneAsync();
        await FlushUntilDoneAsync();

        Assert.Equal(40m, await StripeTotalAsync(customer, "ai_messages"));
        var audit = await Corrections.ListAsync(user, cancellationToken: Ct);
        Assert.Equal(2, audit.Count);
        Assert.All(audit, c => Assert.Equal(UsageCorrectionStatus.Done, c.Status));
        var live = (await Emulator.Admin.GetMeterEventsAsync(customer, cancellationToken: Ct)).Where(a => !a.Canceled).ToList();
        Assert.Equal(40L, Assert.Single(live).Value);
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Void_ReportedMoreThan24HoursAgoOnSumMeter_SendsNegativeEventInSamePeriod()
    {
        var (user, customer, events) = await RecordAsync("ai_messages", 10, 20, 30);
        await FlushUntilDoneAsync();
        Time.Advance(TimeSpan.FromHours(25));

        var correction = await Corrections.VoidAsync(events[2], "ops", "refund", Ct);
        await FlushUntilDoneAsync();

        Assert.Equal((UsageCorrectionKind.Compensated, UsageCorrectionStatus.Done), (correction.Kind, correction.Status));
        Assert.Equal(30m, await StripeTotalAsync(customer, "ai_messages"));
        var accepted = await Emulator.Admin.GetMeterEventsAsync(customer, cancellationToken: Ct);
        var negative = accepted.Single(a => a.Identifier == correction.CorrectionReportId.ToString());
        Assert.Equal(-30L, negative.Value);
        Assert.Equal(Now.AddMinutes(-8).ToUnixTimeSeconds(), negative.Timestamp.ToUnixTimeSeconds());
        Assert.DoesNotContain(accepted, a => a.Canceled);
        Assert.Equal(30, await PeriodTotalAsync(user, "ai_messages"));
    }

    [Fact]
    public async Task Void_CancelOwedButFlushedAfterStripesWindow_SumMeterFallsBackToNegativeEvent()
    {
        var (user, customer, events) = await RecordAsync("ai_messages", 10, 20, 30);
        await FlushUntilDoneAsync();
        Time.Advance(TimeSpan.FromHours(22));
        var correction = await Corrections.VoidAsync(events[0], "ops", "late flush", Ct);
        Assert.Equal(UsageCorrectionKind.CancelAndResend, correction.Kind);

        // The flusher was down: by its next run Stripe no longer cancels the report.
        Time.Advance(TimeSpan.FromHours(3));
        await FlushUntilDoneAsync();

        var done = Assert.Single(await Corrections.ListAsync(user, cancellationToken: Ct));
        Assert.Equal((UsageCorrectionKind.Compensated, UsageCorrectionStatus.Done), (done.Kind, done.Status));
        Assert.Contains("cancel refused", done.LastError, StringComparison.Ordinal);
        Assert.Equal(50m, await StripeTotalAsync(customer, "ai_messages"));
        var accepted = await Emulator.Admin.GetMeterEventsAsync(customer, cancellationToken: Ct);
        Assert.DoesNotContain(accepted, a => a.Canceled);
        Assert.Equal(-10L, accepted.Single(a => a.Identifier == done.CorrectionReportId.ToString()).Value);
    }

    [Fact]
    public async Task Void_CancelOwedButFlushedAfterStripesWindow_CountMeterCorrectionFails()
    {
        var (user, customer, events) = await RecordAsync("api_calls", 1, 1);
        await FlushUntilDoneAsync();
        Time.Advance(TimeSpan.FromHours(22));
        await Corrections.VoidAsync(events[0], "ops", "late flush", Ct);
        Time.Advance(TimeSpan.FromHours(3));

        await FlushUntilDoneAsync();

        var failed = Assert.Single(await Corrections.ListAsync(user, cancellationToken: Ct));
        Assert.Equal(UsageCorrectionStatus.Failed, failed.Status);
        Assert.Contains("24 hours", failed.LastError, StringComparison.Ordinal);
        Assert.Equal(2m, await StripeTotalAsync(customer, "api_calls"));
    }

    [Fact]
    public async Task Void_ReportedMoreThan24HoursAgoOnCountMeter_RefusedAndNothingChanges()
    {
        var (user, customer, events) = await RecordAsync("api_calls", 1, 1, 1);
        await FlushUntilDoneAsync();
        Time.Advance(TimeSpan.FromHours(25));

        var refused = await Assert.ThrowsAsync<UsageCorrectionRefusedException>(() => Corrections.VoidAsync(events[0], "ops", "oops", Ct));

        Assert.Equal(UsageCorrectionRefusal.CountMeterTooLate, refused.Refusal);
        Assert.Contains("count meter", refused.Message, StringComparison.Ordinal);
        Assert.Empty(await Corrections.ListAsync(user, cancellationToken: Ct));
        await using var db = Host.CreateContext();
        Assert.Equal(3, await db.UsageEvents.CountAsync(e => e.UserId == user, Ct));
        Assert.Equal(3m, await StripeTotalAsync(customer, "api_calls"));
    }

    [Fact]
    public async Task Void_CountMeterWithin24Hours_ResendCarriesTheRemainingCount()
    {
        var (_, customer, events) = await RecordAsync("api_calls", 5, 5, 5);
        await FlushUntilDoneAsync();
        Assert.Equal(3m, await StripeTotalAsync(customer, "api_calls"));

        await Corrections.VoidAsync(events[0], "ops", "test traffic", Ct);
        await FlushUntilDoneAsync();

        Assert.Equal(2m, await StripeTotalAsync(customer, "api_calls"));
        await AssertTotalsMatchAsync();
    }

    [Fact]
    public async Task Void_WithoutReason_RefusedWithoutWriting()
    {
        var (user, _, events) = await RecordAsync("ai_messages", 10);

        var refused = await Assert.ThrowsAsync<UsageCorrectionRefusedException>(() => Corrections.VoidAsync(events[0], "ops", " ", Ct));

        Assert.Equal(UsageCorrectionRefusal.InvalidRequest, refused.Refusal);
        Assert.Equal(10, await PeriodTotalAsync(user, "ai_messages"));
    }
}

public sealed class SqliteCorrectionTests() : CorrectionComplianceTests(Provider.Sqlite);

public sealed class PostgresCorrectionTests() : CorrectionComplianceTests(Provider.Postgres);
