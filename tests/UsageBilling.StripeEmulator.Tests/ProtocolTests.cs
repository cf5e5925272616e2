using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Stripe;

namespace UsageBilling.StripeEmulator.Tests;

public sealed class ProtocolTests
{
    [Fact]
    public async Task Request_WithoutApiKey_Returns401WithRequestId()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server, auth: false);

        using var resp = await http.GetAsync("/v1/customers", Emu.Ct);

        Assert.Equal(HttpStatusCode.Unauthorized, resp.StatusCode);
        Assert.StartsWith("req_", resp.Headers.GetValues("Request-Id").Single(), StringComparison.Ordinal);
        Assert.Contains("\"type\":\"invalid_request_error\"", await resp.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Request_WithLiveOrBogusKey_Returns401ThroughStripeNet()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;

        var ex = await Assert.ThrowsAsync<StripeException>(() => Emu.Client(server, key: "sk_live_123").V1.Customers.ListAsync(cancellationToken: Emu.Ct));

        Assert.Equal(HttpStatusCode.Unauthorized, ex.HttpStatusCode);
        Assert.Equal(1, (await server.Admin.GetRejectionCountsAsync(Emu.Ct))["unauthorized"]);
    }

    [Fact]
    public async Task Request_BasicAuthWithSecretKey_IsAccepted()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server, auth: false);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(Emu.Key + ":")));

        using var resp = await http.GetAsync("/v1/customers", Emu.Ct);

        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
    }

    [Fact]
    public async Task Request_UnknownUrl_Returns404StripeShaped()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);

        using var resp = await http.GetAsync("/v1/charges_that_do_not_exist", Emu.Ct);

        Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        Assert.Contains("Unrecognized request URL", await resp.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
    }

    public static TheoryData<string, string, string?> MalformedBodies => new()
    {
        { "application/x-www-form-urlencoded", "a[b=1", null },
        { "application/x-www-form-urlencoded", "]=1", null },
        { "application/x-www-form-urlencoded", "email=%zz", null },
        { "application/x-www-form-urlencoded", "email=a&email[x]=b", "email" },
        { "application/x-www-form-urlencoded", "metadata=notanobject", "metadata" },
        { "application/x-www-form-urlencoded", "email[nested]=x", "email" },
        { "application/x-www-form-urlencoded", "nonsense=1", "nonsense" },
        { "application/json", "{\"email\":\"a@b.c\"}", null },
    };

    [Theory]
    [MemberData(nameof(MalformedBodies))]
    public async Task Post_MalformedBody_Returns400NotA500(string contentType, string body, string? param)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue(contentType);

        using var resp = await http.PostAsync("/v1/customers", content, Emu.Ct);
        var text = await resp.Content.ReadAsStringAsync(Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Contains("\"error\":{\"type\":\"invalid_request_error\"", text, StringComparison.Ordinal);
        if (param is not null)
        {
            Assert.Contains($"\"param\":\"{param}\"", text, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("/v1/billing/meters?limit=abc", "limit")]
    [InlineData("/v1/billing/meters?status=archived", "status")]
    [InlineData("/v1/prices?active=maybe", "active")]
    [InlineData("/v1/billing/meters?bogus=1", "bogus")]
    public async Task Get_WrongTypes_Return400WithParam(string url, string param)
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);

        using var resp = await http.GetAsync(url, Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Contains($"\"param\":\"{param}\"", await resp.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Post_WrongTypeTimestamp_Returns400InvalidInteger()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);

        using var resp = await http.PostAsync("/v1/billing/meter_events",
            Emu.Form(("event_name", "x"), ("payload[value]", "1"), ("timestamp", "yesterday")), Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Contains("parameter_invalid_integer", await resp.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Post_HugeBody_Returns400()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;
        using var http = Emu.Raw(server);
        var body = "description=" + new string('a', 3 * 1024 * 1024);

        using var resp = await http.PostAsync("/v1/customers", new StringContent(body, Encoding.UTF8, "application/x-www-form-urlencoded"), Emu.Ct);

        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Contains("request_body_too_large", await resp.Content.ReadAsStringAsync(Emu.Ct), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Response_CarriesRequestIdAndStripeVersion()
    {
        var (server, _) = await Emu.StartAsync();
        await using var _s = server;

        var cus = await Emu.CustomerAsync(Emu.Client(server));

        Assert.StartsWith("req_", cus.StripeResponse.RequestId, StringComparison.Ordinal);
        Assert.Equal("2026-10-28.endive", cus.StripeResponse.Headers.GetValues("Stripe-Version").Single());
    }
}
