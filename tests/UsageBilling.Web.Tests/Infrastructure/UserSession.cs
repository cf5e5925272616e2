using System.Net;
using System.Net.Http.Json;
using AngleSharp.Html.Dom;
using AngleSharp.Html.Parser;

namespace UsageBilling.Web.Tests.Infrastructure;

/// <summary>One browser-like HTTP session (cookies kept, redirects not followed) driving the app's forms.</summary>
public sealed class UserSession(HttpClient client) : IDisposable
{
    private static readonly HtmlParser Parser = new();

    public HttpClient Client { get; } = client;

    public static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async Task<IHtmlDocument> GetPageAsync(string path)
    {
        var response = await Client.GetAsync(path, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await Parser.ParseDocumentAsync(await response.Content.ReadAsStringAsync(Ct), Ct);
    }

    /// <summary>The form fields a page rendered (antiforgery token, handler name, hidden ids) for the form with this handler.</summary>
    public static Dictionary<string, string> FieldsOf(IHtmlDocument page, string handler)
    {
        var form = page.QuerySelectorAll("form").OfType<IHtmlFormElement>()
            .FirstOrDefault(f => f.QuerySelector($"input[name='_handler'][value='{handler}']") is not null)
            ?? throw new InvalidOperationException($"No form '{handler}' on the page:\n{page.Body?.OuterHtml}");
        return form.QuerySelectorAll("input[type='hidden']").OfType<IHtmlInputElement>()
            .Where(i => !string.IsNullOrEmpty(i.Name))
            .ToDictionary(i => i.Name!, i => i.Value);
    }

    public async Task<HttpResponseMessage> PostFormAsync(string path, Dictionary<string, string> fields) =>
        await Client.PostAsync(path, new FormUrlEncodedContent(fields), Ct);

    public static async Task<IHtmlDocument> ParseAsync(HttpResponseMessage response) =>
        await Parser.ParseDocumentAsync(await response.Content.ReadAsStringAsync(Ct), Ct);

    public async Task RegisterAsync(string email, string password)
    {
        var fields = FieldsOf(await GetPageAsync("/account/register"), "register");
        fields["Input.Email"] = email;
        fields["Input.Password"] = password;
        var response = await PostFormAsync("/account/register", fields);
        Assert.True(response.StatusCode == HttpStatusCode.Redirect, $"Sign-up did not redirect: {(int)response.StatusCode}\n{await response.Content.ReadAsStringAsync(Ct)}");
        Assert.Equal("/plans", response.Headers.Location is { } l ? (l.IsAbsoluteUri ? l.AbsolutePath : l.OriginalString) : null);
    }

    public async Task<HttpResponseMessage> LoginAsync(string email, string password)
    {
        var fields = FieldsOf(await GetPageAsync("/account/login"), "login");
        fields["Input.Email"] = email;
        fields["Input.Password"] = password;
        return await PostFormAsync("/account/login", fields);
    }

    public async Task<IHtmlDocument> ChoosePlanAsync(string plan)
    {
        var fields = FieldsOf(await GetPageAsync("/plans"), "subscribe");
        fields["Form.PlanId"] = plan;
        var response = await PostFormAsync("/plans", fields);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await ParseAsync(response);
    }

    /// <summary>The assistant form's fields, ready to post a message (the request id comes from the page).</summary>
    public async Task<Dictionary<string, string>> AssistantFormAsync(string message)
    {
        var fields = FieldsOf(await GetPageAsync("/assistant"), "assistant");
        fields["Form.Message"] = message;
        return fields;
    }

    public async Task<IHtmlDocument> SendMessageAsync(string message) => await PostAssistantAsync(await AssistantFormAsync(message));

    public async Task<IHtmlDocument> PostAssistantAsync(Dictionary<string, string> fields)
    {
        var response = await PostFormAsync("/assistant", fields);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await ParseAsync(response);
    }

    public async Task<UsageDto> GetUsageAsync()
    {
        var usage = await Client.GetFromJsonAsync<UsageDto>("/api/usage", Ct);
        return usage ?? throw new InvalidOperationException("No usage.");
    }

    public void Dispose() => Client.Dispose();
}

public sealed record UsageDto(Guid UserId, string? PlanId, decimal ProjectedTotal, List<MeterDto> Meters);

public sealed record MeterDto(string Meter, long Used, long Included, long Remaining, double PercentOfIncluded, long? HardLimit, long PendingQuantity, DateTimeOffset? ReportedAsOf, DateTimeOffset PeriodStart, DateTimeOffset PeriodEnd);
