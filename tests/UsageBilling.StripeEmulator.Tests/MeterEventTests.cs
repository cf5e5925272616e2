using System.Net;
using Stripe;
using Stripe.Billing;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.Tests;

public sealed class MeterEventTests
{
    [Fact]
    public async Task Create_ValidEvent_ReturnsStripeShapedMeterEvent()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        var ev = await Emu.UsageAsync(c, cus.Id, 3, identifier: "rep-1");

        Assert.Equal("billing.meter_event", ev.Object);
        Assert.Equal("ai_messages", ev.EventName);
        Assert.Equal("rep-1", ev.Identifier);
        Assert.Equal("3", ev.Payload["value"]);
        Assert.Equal(cus.Id, ev.Payload["stripe_customer_id"]);
        Assert.Equal(Emu.T0.UtcDateTime, ev.Timestamp);
        Assert.Equal(Emu.T0.UtcDateTime, ev.Created);
        Assert.False(ev.Livemode);
        Assert.False(string.IsNullOrEmpty(ev.StripeResponse.RequestId));
        var accepted = Assert.Single(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
        Assert.Equal(("rep-1", cus.Id, 3L, (string?)null), (accepted.Identifier, accepted.CustomerId, accepted.Value, accepted.ErrorCode));
    }

    [Fact]
    public async Task Create_NoIdentifier_GeneratesUniqueOne()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        var a = await Emu.UsageAsync(c, cus.Id, 1);
        var b = await Emu.UsageAsync(c, cus.Id, 1);

        Assert.False(string.IsNullOrEmpty(a.Identifier));
        Assert.NotEqual(a.Identifier, b.Identifier);
        Assert.Equal(2m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Create_DuplicateIdentifierWithinWindow_Returns400AlreadyExistsAndShouldRetryFalse()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server, retries: 2);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        await Emu.UsageAsync(c, cus.Id, 5, identifier: "rep-dup");
        time.Advance(TimeSpan.FromHours(23));

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 5, identifier: "rep-dup"));

        Assert.Equal(HttpStatusCode.BadRequest, ex.HttpStatusCode);
        Assert.Equal("invalid_request_error", ex.StripeError.Type);
        Assert.Equal("An event already exists with identifier rep-dup.", ex.StripeError.Message);
        Assert.Equal("false", ex.StripeResponse.Headers.GetValues("Stripe-Should-Retry").Single());
        Assert.Equal(5m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
        Assert.Equal(1, (await server.Admin.GetRejectionCountsAsync(Emu.Ct))["duplicate_identifier"]);
    }

    [Fact]
    public async Task Create_DuplicateIdentifierAfterWindow_IsAcceptedAndCountsTwice()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        await Emu.UsageAsync(c, cus.Id, 5, identifier: "rep-late");
        time.Advance(TimeSpan.FromHours(24) + TimeSpan.FromSeconds(1));

        await Emu.UsageAsync(c, cus.Id, 5, identifier: "rep-late", at: Emu.T0.AddMinutes(1));

        Assert.Equal(10m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Create_ConfiguredDedupWindow_IsHonoured()
    {
        var (server, time) = await Emu.StartAsync(o => o.IdentifierDedupWindow = TimeSpan.FromHours(48));
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        await Emu.UsageAsync(c, cus.Id, 5, identifier: "rep-48");
        time.Advance(TimeSpan.FromHours(30));

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 5, identifier: "rep-48"));

        Assert.Equal(HttpStatusCode.BadRequest, ex.HttpStatusCode);
    }

    [Theory]
    [InlineData("1.5")]
    [InlineData("abc")]
    [InlineData("")]
    [InlineData("1e3")]
    public async Task Create_NonIntegerValue_Returns400(string value)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        var ex = await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.MeterEvents.CreateAsync(new MeterEventCreateOptions
        {
            EventName = "ai_messages",
            Payload = new() { ["stripe_customer_id"] = cus.Id, ["value"] = value },
        }, cancellationToken: Emu.Ct));

        Assert.Equal(HttpStatusCode.BadRequest, ex.HttpStatusCode);
        Assert.Equal("payload[value]", ex.StripeError.Param);
        Assert.Empty(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
    }

    [Fact]
    public async Task Create_MoreThan15SignificantDigits_Returns400_15Accepted()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        await Emu.UsageAsync(c, cus.Id, 999_999_999_999_999);
        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1_000_000_000_000_000));

        Assert.Equal(HttpStatusCode.BadRequest, ex.HttpStatusCode);
        Assert.Equal("meter_event_value_too_many_digits", ex.StripeError.Code);
    }

    [Fact]
    public async Task Create_NegativeValue_IsAcceptedAsCorrection()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        await Emu.UsageAsync(c, cus.Id, 10);
        await Emu.UsageAsync(c, cus.Id, -4);

        Assert.Equal(6m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Create_MissingRequiredParams_Return400ParameterMissing()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);

        var noName = await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.MeterEvents.CreateAsync(
            new MeterEventCreateOptions { Payload = new() { ["value"] = "1" } }, cancellationToken: Emu.Ct));
        var noPayload = await Assert.ThrowsAsync<StripeException>(() => c.V1.Billing.MeterEvents.CreateAsync(
            new MeterEventCreateOptions { EventName = "ai_messages" }, cancellationToken: Emu.Ct));

        Assert.Equal(("parameter_missing", "event_name"), (noName.StripeError.Code, noName.StripeError.Param));
        Assert.Equal(("parameter_missing", "payload"), (noPayload.StripeError.Code, noPayload.StripeError.Param));
    }

    [Fact]
    public async Task Create_TooLongEventNameOrIdentifier_Return400()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var cus = await Emu.CustomerAsync(c);

        var longName = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1, eventName: new string('e', 101)));
        var longId = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1, identifier: new string('i', 101)));

        Assert.Equal("event_name", longName.StripeError.Param);
        Assert.Equal("identifier", longId.StripeError.Param);
    }

    [Fact]
    public async Task Create_TimestampOlderThan35Days_Returns400_WithinWindowAccepted()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        await Emu.UsageAsync(c, cus.Id, 1, at: Emu.T0.AddDays(-35).AddMinutes(1));
        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 1, at: Emu.T0.AddDays(-35).AddSeconds(-1)));

        Assert.Equal(HttpStatusCode.BadRequest, ex.HttpStatusCode);
        Assert.Equal(("timestamp_too_far_in_past", "timestamp"), (ex.StripeError.Code, ex.StripeError.Param));
    }

    [Fact]
    public async Task Create_TimestampMoreThan5MinutesAhead_AcceptedButReportedAndNotCounted()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        await Emu.UsageAsync(c, cus.Id, 2, at: Emu.T0.AddMinutes(5));
        await Emu.UsageAsync(c, cus.Id, 7, at: Emu.T0.AddMinutes(6));

        var events = await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct);
        Assert.Equal([null, "timestamp_in_future"], events.Select(e => e.ErrorCode));
        Assert.Equal(2m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Create_FutureTimestampWithSynchronousRejection_Returns400()
    {
        var (server, _) = await Emu.StartAsync(o => o.RejectFutureTimestampsSynchronously = true);
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.UsageAsync(c, cus.Id, 7, at: Emu.T0.AddMinutes(6)));

        Assert.Equal("timestamp_in_future", ex.StripeError.Code);
    }

    [Fact]
    public async Task Create_TimestampNotArrival_DecidesThePeriod()
    {
        var (server, time) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        time.Advance(TimeSpan.FromDays(2));

        await Emu.UsageAsync(c, cus.Id, 4, at: Emu.T0.AddHours(12));
        await Emu.UsageAsync(c, cus.Id, 6);

        Assert.Equal(4m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
        Assert.Equal(6m, await server.Admin.GetMeterTotalAsync(cus.Id, "ai_messages", Emu.T0.AddDays(2), Emu.T0.AddDays(3), Emu.Ct));
    }

    [Theory]
    [InlineData("unknown_customer", "meter_event_customer_not_found")]
    [InlineData("no_customer", "meter_event_no_customer_defined")]
    [InlineData("inactive_meter", "archived_meter")]
    [InlineData("no_meter", "no_meter")]
    [InlineData("no_value", "meter_event_invalid_value")]
    public async Task Create_AsynchronousProblems_Return200ThenErrorCodeAndNotCounted(string scenario, string code)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var meter = await Emu.MeterAsync(c);
        var cus = await Emu.CustomerAsync(c);
        var payload = new Dictionary<string, string> { ["stripe_customer_id"] = cus.Id, ["value"] = "3" };
        var eventName = "ai_messages";
        switch (scenario)
        {
            case "unknown_customer": payload["stripe_customer_id"] = "cus_doesnotexist"; break;
            case "no_customer": payload.Remove("stripe_customer_id"); break;
            case "inactive_meter": await c.V1.Billing.Meters.DeactivateAsync(meter.Id, cancellationToken: Emu.Ct); break;
            case "no_meter": eventName = "nobody_listens"; break;
            case "no_value": payload.Remove("value"); break;
        }

        var ev = await c.V1.Billing.MeterEvents.CreateAsync(new MeterEventCreateOptions { EventName = eventName, Payload = payload }, cancellationToken: Emu.Ct);

        Assert.Equal("billing.meter_event", ev.Object);
        var accepted = Assert.Single(await server.Admin.GetMeterEventsAsync(cancellationToken: Emu.Ct));
        Assert.Equal(code, accepted.ErrorCode);
        Assert.Equal(0m, await server.Admin.GetMeterTotalAsync(cus.Id, meter.Id, Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Create_CustomPayloadKeys_FollowMeterMappingAndValueSettings()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        var c = Emu.Client(server);
        var meter = await c.V1.Billing.Meters.CreateAsync(new MeterCreateOptions
        {
            DisplayName = "Tokens",
            EventName = "tokens",
            DefaultAggregation = new MeterDefaultAggregationOptions { Formula = "sum" },
            CustomerMapping = new MeterCustomerMappingOptions { EventPayloadKey = "account", Type = "by_id" },
            ValueSettings = new MeterValueSettingsOptions { EventPayloadKey = "tokens" },
        }, cancellationToken: Emu.Ct);
        var cus = await Emu.CustomerAsync(c);

        await c.V1.Billing.MeterEvents.CreateAsync(new MeterEventCreateOptions
        {
            EventName = "tokens",
            Payload = new() { ["account"] = cus.Id, ["tokens"] = "1200" },
        }, cancellationToken: Emu.Ct);

        Assert.Equal(1200m, await server.Admin.GetMeterTotalAsync(cus.Id, meter.Id, Emu.T0, Emu.T0.AddDays(1), Emu.Ct));
    }

    [Fact]
    public async Task Create_UnknownParameter_Returns400ParameterUnknown()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);

        using var resp = await http.PostAsync("/v1/billing/meter_events", Emu.Form(("event_name", "x"), ("payload[value]", "1"), ("quantity", "1")), Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Contains("\"code\":\"parameter_unknown\"", await resp.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
    }
}
