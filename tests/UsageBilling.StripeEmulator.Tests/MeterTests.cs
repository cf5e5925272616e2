using System.Net;
using Stripe;
using Stripe.Billing;

namespace UsageBilling.StripeEmulator.Tests;

public sealed class MeterTests
{
    [Fact]
    public async Task Create_ReturnsMeterWithDefaults()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);

        var m = await Emu.MeterAsync(c, window: "hour");

        Assert.StartsWith("mtr_", m.Id, StringComparison.Ordinal);
        Assert.Equal(("billing.meter", "active", "sum", "hour"), (m.Object, m.Status, m.DefaultAggregation.Formula, m.EventTimeWindow));
        Assert.Equal(("stripe_customer_id", "by_id", "value"), (m.CustomerMapping.EventPayloadKey, m.CustomerMapping.Type, m.ValueSettings.EventPayloadKey));
        Assert.Equal(m.Id, (await c.V1.Billing.Meters.GetAsync(m.Id, cancellationToken: Emu.Ct)).Id);
    }

    [Fact]
    public async Task Create_DuplicateEventName_Returns400()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.MeterAsync(c));

        Assert.Equal((HttpStatusCode.BadRequest, "event_name"), (ex.HttpStatusCode, ex.StripeError.Param));
    }

    [Fact]
    public async Task Create_MissingRequiredOrBadEnum_Returns400()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);

        var noAgg = await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.Meters.CreateAsync(
            new MeterCreateOptions { DisplayName = "x", EventName = "x" }, cancellationToken: Emu.Ct));
        var badFormula = await Assert.ThrowsAsync<StripeException>(() => Emu.MeterAsync(c, "y", formula: "avg"));
        var badWindow = await Assert.ThrowsAsync<StripeException>(() => Emu.MeterAsync(c, "z", window: "week"));

        Assert.Equal("default_aggregation", noAgg.StripeError.Param);
        Assert.Equal("default_aggregation[formula]", badFormula.StripeError.Param);
        Assert.Equal("event_time_window", badWindow.StripeError.Param);
    }

    [Fact]
    public async Task Update_OnlyDisplayNameCanChange()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var m = await Emu.MeterAsync(c);
        using var http = Emu.Raw(server);

        var updated = await c.V1.Billing.Meters.UpdateAsync(m.Id, new MeterUpdateOptions { DisplayName = "Messages" }, cancellationToken: Emu.Ct);
        using var resp = await http.PostAsync($"/v1/billing/meters/{m.Id}", Emu.Form(("event_name", "other")), Emu.Ct);

        Assert.Equal("Messages", updated.DisplayName);
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Contains("parameter_unknown", await resp.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeactivateReactivate_ChangeStatusAndTransitions()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var m = await Emu.MeterAsync(c);
        time.Advance(TimeSpan.FromMinutes(3));

        var off = await c.V1.Billing.Meters.DeactivateAsync(m.Id, cancellationToken: Emu.Ct);
        var again = await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.Meters.DeactivateAsync(m.Id, cancellationToken: Emu.Ct));
        var on = await c.V1.Billing.Meters.ReactivateAsync(m.Id, cancellationToken: Emu.Ct);

        Assert.Equal("inactive", off.Status);
        Assert.Equal(Emu.T0.AddMinutes(3).UtcDateTime, off.StatusTransitions.DeactivatedAt);
        Assert.Equal(HttpStatusCode.BadRequest, again.HttpStatusCode);
        Assert.Equal("active", on.Status);
        Assert.Null(on.StatusTransitions.DeactivatedAt);
    }

    [Fact]
    public async Task List_FiltersByStatusAndPaginates()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await Emu.MeterAsync(c, $"e{i}")).Id);
            time.Advance(TimeSpan.FromSeconds(1));
        }

        await c.V1.Billing.Meters.DeactivateAsync(ids[0], cancellationToken: Emu.Ct);

        var page1 = await c.V1.Billing.Meters.ListAsync(new MeterListOptions { Status = "active", Limit = 2 }, cancellationToken: Emu.Ct);
        var page2 = await c.V1.Billing.Meters.ListAsync(new MeterListOptions { Status = "active", Limit = 2, StartingAfter = page1.Data[^1].Id }, cancellationToken: Emu.Ct);
        var back = await c.V1.Billing.Meters.ListAsync(new MeterListOptions { Status = "active", Limit = 2, EndingBefore = page2.Data[0].Id }, cancellationToken: Emu.Ct);
        var inactive = await c.V1.Billing.Meters.ListAsync(new MeterListOptions { Status = "inactive" }, cancellationToken: Emu.Ct);
        var all = new List<Meter>();
        await foreach (var m in c.V1.Billing.Meters.ListAutoPagingAsync(new MeterListOptions { Limit = 2 }, cancellationToken: Emu.Ct))
        {
            all.Add(m);
        }

        Assert.Equal([ids[4], ids[3]], page1.Data.Select(m => m.Id));
        Assert.True(page1.HasMore);
        Assert.Equal([ids[2], ids[1]], page2.Data.Select(m => m.Id));
        Assert.False(page2.HasMore);
        Assert.Equal([ids[4], ids[3]], back.Data.Select(m => m.Id));
        Assert.Equal([ids[0]], inactive.Data.Select(m => m.Id));
        Assert.Equal(5, all.Count);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(101)]
    public async Task List_LimitOutOfRange_Returns400(long limit)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.Client(server).V1.Billing.Meters.ListAsync(new MeterListOptions { Limit = limit }, cancellationToken: Emu.Ct));

        Assert.Equal("limit", ex.StripeError.Param);
    }

    [Fact]
    public async Task Get_Unknown_Returns404ResourceMissing()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.Client(server).V1.Billing.Meters.GetAsync("mtr_nope", cancellationToken: Emu.Ct));

        Assert.Equal((HttpStatusCode.NotFound, "resource_missing"), (ex.HttpStatusCode, ex.StripeError.Code));
    }
}

public sealed class EventSummaryTests
{
    private static MeterEventSummaryListOptions Range(string customer, DateTimeOffset start, DateTimeOffset end, string? window = null) =>
        new() { Customer = customer, StartTime = start.UtcDateTime, EndTime = end.UtcDateTime, ValueGroupingWindow = window, Limit = 100 };

    [Fact]
    public async Task List_WholeRange_ReturnsOneSummaryStartInclusiveEndExclusive()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var m = await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        time.Advance(TimeSpan.FromHours(3));
        await Emu.UsageAsync(c, cus.Id, 2, at: Emu.T0);
        await Emu.UsageAsync(c, cus.Id, 3, at: Emu.T0.AddMinutes(59).AddSeconds(59));
        await Emu.UsageAsync(c, cus.Id, 100, at: Emu.T0.AddHours(1));

        var list = await c.V1.Billing.Meters.EventSummaries.ListAsync(m.Id, Range(cus.Id, Emu.T0, Emu.T0.AddHours(1)), cancellationToken: Emu.Ct);

        var s = Assert.Single(list.Data);
        Assert.Equal(("billing.meter_event_summary", 5m, m.Id), (s.Object, (decimal)s.AggregatedValue, s.Meter));
        Assert.Equal(Emu.T0.UtcDateTime, s.StartTime);
        Assert.Equal(Emu.T0.AddHours(1).UtcDateTime, s.EndTime);
    }

    [Fact]
    public async Task List_HourGrouping_OneSummaryPerHourNewestFirst()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var m = await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        time.Advance(TimeSpan.FromHours(3));
        await Emu.UsageAsync(c, cus.Id, 2, at: Emu.T0.AddMinutes(10));
        await Emu.UsageAsync(c, cus.Id, 7, at: Emu.T0.AddHours(2).AddMinutes(10));

        var list = await c.V1.Billing.Meters.EventSummaries.ListAsync(m.Id, Range(cus.Id, Emu.T0, Emu.T0.AddHours(3), "hour"), cancellationToken: Emu.Ct);

        Assert.Equal([7m, 0m, 2m], list.Data.Select(s => s.AggregatedValue));
    }

    [Fact]
    public async Task List_DayGrouping_AlignedToUtcMidnight()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var m = await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        time.Advance(TimeSpan.FromDays(2));
        await Emu.UsageAsync(c, cus.Id, 4, at: Emu.T0.AddHours(23));
        await Emu.UsageAsync(c, cus.Id, 1, at: Emu.T0.AddHours(25));

        var list = await c.V1.Billing.Meters.EventSummaries.ListAsync(m.Id, Range(cus.Id, Emu.T0, Emu.T0.AddDays(2), "day"), cancellationToken: Emu.Ct);
        var misaligned = await Assert.ThrowsAsync<StripeException>(() =>
            c.V1.Billing.Meters.EventSummaries.ListAsync(m.Id, Range(cus.Id, Emu.T0.AddHours(1), Emu.T0.AddDays(1).AddHours(1), "day"), cancellationToken: Emu.Ct));

        Assert.Equal([1m, 4m], list.Data.Select(s => s.AggregatedValue));
        Assert.Equal("start_time", misaligned.StripeError.Param);
    }

    [Theory]
    [InlineData(30, 0, null, "start_time")]
    [InlineData(0, 90, null, "end_time")]
    [InlineData(60, 3600, "hour", "start_time")]
    [InlineData(0, 3660, "hour", "end_time")]
    public async Task List_MisalignedTimes_Return400(int startOffset, int endOffset, string? window, string param)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var m = await Emu.MeterAsync(c);
        var end = endOffset == 0 ? Emu.T0.AddHours(1) : Emu.T0.AddSeconds(endOffset);

        var ex = await Assert.ThrowsAsync<StripeException>(() =>
            c.V1.Billing.Meters.EventSummaries.ListAsync(m.Id, Range("cus_x", Emu.T0.AddSeconds(startOffset), end, window), cancellationToken: Emu.Ct));

        Assert.Equal((HttpStatusCode.BadRequest, param), (ex.HttpStatusCode, ex.StripeError.Param));
    }

    [Theory]
    [InlineData("sum", null, 12)]
    [InlineData("count", null, 3)]
    [InlineData("last", null, 5)]
    [InlineData("sum", "hour", 9)]
    [InlineData("sum", "day", 5)]
    public async Task Aggregation_FormulaAndEventTimeWindow(string formula, string? window, double expected)
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var m = await Emu.MeterAsync(c, formula: formula, window: window);
        var cus = await Emu.CustomerAsync(c);
        time.Advance(TimeSpan.FromHours(5));
        await Emu.UsageAsync(c, cus.Id, 3, at: Emu.T0.AddMinutes(5));
        await Emu.UsageAsync(c, cus.Id, 4, at: Emu.T0.AddMinutes(50));
        await Emu.UsageAsync(c, cus.Id, 5, at: Emu.T0.AddHours(2));

        var s = (await c.V1.Billing.Meters.EventSummaries.ListAsync(m.Id, Range(cus.Id, Emu.T0, Emu.T0.AddDays(1)), cancellationToken: Emu.Ct)).Data.Single();

        Assert.Equal((decimal)expected, s.AggregatedValue);
    }
}

public sealed class AdjustmentTests
{
    [Fact]
    public async Task Cancel_Within24Hours_RemovesEventFromAggregation()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var m = await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        await Emu.UsageAsync(c, cus.Id, 10, identifier: "keep");
        await Emu.UsageAsync(c, cus.Id, 99, identifier: "oops");
        time.Advance(TimeSpan.FromHours(23));

        var adj = await c.V1.Billing.MeterEventAdjustments.CreateAsync(new MeterEventAdjustmentCreateOptions
        {
            EventName = "ai_messages",
            Type = "cancel",
            Cancel = new MeterEventAdjustmentCancelOptions { Identifier = "oops" },
        }, cancellationToken: Emu.Ct);

        Assert.Equal(("billing.meter_event_adjustment", "cancel", "oops"), (adj.Object, adj.Type, adj.Cancel.Identifier));
        Assert.Equal(10m, await server.Admin.GetMeterTotalAsync(cus.Id, m.Id, Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
        Assert.True((await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct)).Single(e => e.Identifier == "oops").Canceled);
    }

    [Fact]
    public async Task Cancel_After24Hours_Returns400UseNegativeEventInstead()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        await Emu.UsageAsync(c, cus.Id, 99, identifier: "old");
        time.Advance(TimeSpan.FromHours(24) + TimeSpan.FromSeconds(1));

        var ex = await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.MeterEventAdjustments.CreateAsync(new MeterEventAdjustmentCreateOptions
        {
            EventName = "ai_messages",
            Type = "cancel",
            Cancel = new MeterEventAdjustmentCancelOptions { Identifier = "old" },
        }, cancellationToken: Emu.Ct));

        Assert.Equal((HttpStatusCode.BadRequest, "cancel[identifier]"), (ex.HttpStatusCode, ex.StripeError.Param));
    }

    [Fact]
    public async Task Cancel_MissingIdentifierOrBadType_Returns400()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);

        var noCancel = await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.MeterEventAdjustments.CreateAsync(
            new MeterEventAdjustmentCreateOptions { EventName = "ai_messages", Type = "cancel" }, cancellationToken: Emu.Ct));
        var badType = await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.MeterEventAdjustments.CreateAsync(
            new MeterEventAdjustmentCreateOptions { EventName = "ai_messages", Type = "delete", Cancel = new() { Identifier = "x" } }, cancellationToken: Emu.Ct));

        Assert.Equal("cancel", noCancel.StripeError.Param);
        Assert.Equal("type", badType.StripeError.Param);
    }
}
